"""Writers (docs/writers.md): the page's random id in header X-Writer, and the memory of that writer that goes
to the handler beside each of their drawings (handler/adapt.py blends it with the model).

The id is the client's secret (at least 128 random bits, base64url): what is stored and cached is its
SHA-256 (writer_key), and no log line carries it. A request without the header is answered as ever, at
no cost; a malformed one is a 400.

The memory lives in the feedback database (web/feedback_store.py writer_memory: every replica sees a write
at once, and it outlives restarts). A replica reads a writer's memory ids (one indexed query) at most once
every FRESH seconds per writer, and again at once after it changed them itself (a feedback, a DELETE); the
packed memory (handler/adapt.py pack) is cached per writer and rebuilt only when those ids change. So a
writer drawing on the page costs a dictionary lookup per drawing, not a query. A database that cannot be
read, or not within WAIT, leaves the drawing unadapted (or adapted by the memory last read), never
unanswered nor held up: then no drawing asks it again for DOWN_FOR seconds.
"""

import asyncio
import hashlib
import re
import time
from collections import OrderedDict

from aiohttp import web

from handler.adapt import pack
from web.errors import error
from web.feedback_store import FeedbackStore, StoreUnavailable

HEADER = "X-Writer"
ID_RE = re.compile(r"[A-Za-z0-9_-]{22,128}")  # base64url of 16 bytes or more, no padding
CACHED = 4096  # writers whose packed memory a web process keeps (~11 KB each at most)
# Seconds a replica answers a writer from the memory it last read before reading the ids again: a change made
# through this replica counts at once, one made through another within this (docs/writers.md, "Cost").
FRESH = 1.0
# A drawing waits at most WAIT seconds for its writer's memory; a read that fails or takes longer leaves it
# unadapted (or with the memory last read), and no drawing asks the database again for DOWN_FOR seconds: a
# database down or slow never holds predictions up by more than WAIT, once per DOWN_FOR.
WAIT = 0.25
DOWN_FOR = 2.0


class BadWriter(ValueError):
    """The X-Writer header is not an id the page makes: a 400."""


def writer_key(request: web.Request) -> str | None:
    """The SHA-256 (hex) of the request's writer id; None without the header; BadWriter if malformed."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not ID_RE.fullmatch(value):
        raise BadWriter(
            f"{HEADER} must be a random id of at least 128 bits, base64url (22 to 128 of A-Z a-z 0-9 - _)"
        )
    return hashlib.sha256(value.encode()).hexdigest()


class Writers:
    def __init__(self, store: FeedbackStore, size: int = CACHED, fresh: float = FRESH, clock=time.monotonic):
        self.store = store
        self.size = size
        self.fresh = fresh
        self.clock = clock
        self.wait = WAIT
        self.down_until = 0.0  # after a failed read: no reads before this (clock), answers unadapted or stale
        # writer -> (when its ids were read, the ids, the packed memory): the least recently used goes first
        self.packed: OrderedDict[str, tuple[float, tuple[int, ...], bytes]] = OrderedDict()

    async def memory(self, writer: str | None) -> bytes:
        """The writer's memory as the handler's part, b"" when there is none (or no writer, or no database)."""
        if writer is None:
            return b""
        cached = self.packed.get(writer)
        now = self.clock()
        if cached is not None and now - cached[0] < self.fresh:
            self.packed.move_to_end(writer)
            return cached[2]
        stale = cached[2] if cached is not None else b""
        if now < self.down_until:  # the database failed a moment ago: do not wait on it for every drawing
            return stale
        try:
            async with asyncio.timeout(self.wait):
                ids, blob = await self._read(writer, cached)
        except (StoreUnavailable, TimeoutError):
            self.down_until = now + DOWN_FOR
            return stale
        self.packed[writer] = (now, ids, blob)
        self.packed.move_to_end(writer)
        while len(self.packed) > self.size:
            self.packed.popitem(last=False)
        return blob

    async def _read(self, writer: str, cached) -> tuple[tuple[int, ...], bytes]:
        ids = await self.store.memory_ids(writer)
        if cached is not None and cached[1] == ids:
            return ids, cached[2]
        if not ids:
            return ids, b""
        rows = await self.store.memory(writer, ids)
        kept = [rows[i] for i in ids if i in rows]
        return ids, pack([label for label, _ in kept], [image for _, image in kept])

    def changed(self, writer: str) -> None:
        """This replica changed the writer's memory: the next drawing reads it again."""
        self.packed.pop(writer, None)


WRITERS = web.AppKey("writers", Writers)


async def forget_writer(request: web.Request) -> web.Response:
    """DELETE /api/writer: the X-Writer's memory deleted, on every replica (the database is theirs)."""
    try:
        writer = writer_key(request)
    except BadWriter as e:
        return error(400, str(e))
    if writer is None:
        return error(400, f"send the {HEADER} header whose memory to delete")
    writers = request.app[WRITERS]
    try:
        deleted = await writers.store.forget(writer)
    except StoreUnavailable as e:
        print(e, flush=True)
        return error(503, "the memory cannot be deleted right now; try again in a moment")
    writers.changed(writer)
    return web.json_response({"deleted": deleted})
