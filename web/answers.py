"""A drawing's answer in our API's shape: asked of the model through the batcher (web/batching.py),
TorchServe's reply relayed (web/torchserve.py) with its feedback ticket (web/tickets.py). What /predict
and /read send, and their shadow copies (web/traffic.py's Send).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiohttp

from web.batching import Batcher
from web.errors import error
from web.tickets import Tickets, with_ticket
from web.torchserve import Readiness, readiness, relay
from web.traffic import Answered, Send


@dataclass(frozen=True)
class Answers:
    batcher: Batcher
    tickets: Tickets
    model: str
    # Called with the readiness rule's word on each answer of the default version that says something of
    # its worker: a 200 or 422 (ready), a 5xx or no answer at all (not ready); a drawing's own 4xx says
    # nothing. The readiness watch's word (web/readiness.py): under traffic /readyz needs no probe, and a
    # worker gone shows at the first drawing that finds it gone.
    answered: Callable[[Readiness], None] = lambda word: None

    def sender(self, body: bytes, kind: str, client: str, memory: bytes = b"") -> Send:
        """send(version) for a drawing: `kind` (web/batching.py), queued as `client`'s (the rate limiter's
        key), with its writer's memory (web/writers.py; b"" for none)."""
        return partial(self.answer, body, kind, client, memory)

    async def answer(self, body: bytes, kind: str, client: str, memory: bytes, version: str) -> Answered:
        """The drawing's answer from `version` (the default for ""), with its ticket when it has one."""
        try:
            status, payload, pieces = await self.batcher.predict(version, body, kind, client, memory)
        except TimeoutError:
            return Answered(error(504, "the model server did not answer in time"), {}, 0)
        except aiohttp.ClientConnectionError:
            if not version:
                self.answered(readiness(None))
            return Answered(error(503, "the model server is down; try again in a moment"), {}, 0)
        if not version and (status in (200, 422) or status >= 500):
            self.answered(readiness(status))
        response = relay(status, payload, self.model, version)
        if response.status not in (200, 422):
            return Answered(response, {}, pieces)
        answer = json.loads(response.body)
        return Answered(with_ticket(self.tickets, response, answer, body, kind), answer, pieces)
