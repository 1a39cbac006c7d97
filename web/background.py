"""Tasks the web app runs beside its requests (shadow copies, batches at TorchServe), and their end."""

import asyncio


async def drain(tasks: set[asyncio.Task], grace: float) -> None:
    """On shutdown: let the tasks finish for `grace` seconds, then cancel the rest."""
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
