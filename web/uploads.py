"""Request bodies bounded in time and in memory: a slow or stalled upload is its own problem.

A body must have arrived within `deadline` seconds of its request (408 otherwise), and the bytes of the
bodies being read or worked on are bounded all together: each request with a body reserves its declared
Content-Length (max_body when it does not declare one) for its whole life, and one that would take the
total over `bytes_in_flight` is answered 503 with Retry-After at once, before a byte of it is read. So
hundreds of slow 1 MiB uploads cost the web app at most bytes_in_flight (plus aiohttp's read buffer of
each connection, 128 KiB while nobody reads it), and its container stays inside its memory limit
(deploy/base/kubernetes.yaml, docs/limits.md). Bodies larger than any canvas (over SMALL_BODY) hold at
most `large_share` of the bound together: however many slow large uploads come, the rest stays for
canvases (10-50 KB: ~250 at once), which never meet either bound (bench/faults.py, uploads).
"""

import asyncio
import contextlib
import os
from dataclasses import dataclass

from aiohttp import web

from web.metrics import UPLOADS_REFUSED

# When this request's body must have arrived (the loop's clock), set by the middleware for readers.
BODY_DEADLINE = web.RequestKey("body_deadline", float)


class BodyTimeout(Exception):
    """The body did not arrive within its deadline: answered 408."""


# A canvas is 10-50 KB (a data URL of a 280x280 or 560x280 PNG); anything larger is a "large" body.
SMALL_BODY = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    bytes_in_flight: int = 16 * 1024 * 1024  # 16 bodies of the largest allowed size, ~500 canvases
    deadline: float = 10.0  # a canvas arrives in milliseconds; 1 MiB at 1 Mbit/s in 8 s
    # What large bodies may hold of bytes_in_flight together: 200 slow 1 MiB uploads once refused every
    # canvas for as long as they stalled (bench/faults.py, docs/limits.md).
    large_share: float = 0.5

    @classmethod
    def from_env(cls) -> "UploadLimits":
        env = os.environ
        return cls(
            int(env.get("WEB_UPLOAD_BYTES_IN_FLIGHT", cls.bytes_in_flight)),
            float(env.get("WEB_BODY_TIMEOUT", cls.deadline)),
        )


def bounded_uploads(limits: UploadLimits, max_body: int) -> web.middleware:
    in_flight = large_in_flight = 0
    large_bound = limits.bytes_in_flight * limits.large_share

    @web.middleware
    async def bound(request: web.Request, handler):
        nonlocal in_flight, large_in_flight
        if not request.body_exists:
            return await handler(request)
        size = min(request.content_length or max_body, max_body)  # a larger one is refused 413 as read
        large = size if size > SMALL_BODY else 0
        if in_flight + size > limits.bytes_in_flight or large_in_flight + large > large_bound:
            UPLOADS_REFUSED.inc()
            response = web.json_response(
                {"error": "too many uploads in progress; try again in a moment"}, status=503
            )
            response.headers["Retry-After"] = "1"
            return response
        in_flight += size
        large_in_flight += large
        request[BODY_DEADLINE] = asyncio.get_running_loop().time() + limits.deadline
        try:
            return await handler(request)
        finally:
            in_flight -= size
            large_in_flight -= large

    bound.in_flight = lambda: in_flight  # for tests: what is reserved now
    return bound


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request):
    """Reading the body inside this raises BodyTimeout once the request's deadline has passed."""
    try:
        async with asyncio.timeout_at(request.get(BODY_DEADLINE)):  # None: no deadline (no middleware)
            yield
    except TimeoutError:
        raise BodyTimeout("the request body did not arrive in time") from None
