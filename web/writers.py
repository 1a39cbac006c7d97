"""Writers (docs/writers.md): the page's random id in header X-Writer, and the memory of that writer that goes
to the handler beside each of their drawings (handler/adapt.py blends it with the model).

The id is the client's secret (at least 128 random bits, base64url): what is stored and cached is its
SHA-256 (writer_key), and no log line carries it. A request without the header is answered as ever, at
no cost; a malformed one is a 400.

The memory lives in the feedback database (web/feedback_store.py writer_memory: every replica sees a write
at once, and it outlives restarts). Per drawing of a writer this asks the database one indexed query, the
ids of their memory; the packed memory (handler/adapt.py pack) is cached here per writer and rebuilt only
when those ids change. A database that cannot be read leaves the drawing unadapted, never unanswered.
"""

import hashlib
import re
from collections import OrderedDict

from aiohttp import web

from handler.adapt import pack
from web.errors import error
from web.feedback_store import FeedbackStore, StoreUnavailable

HEADER = "X-Writer"
ID_RE = re.compile(r"[A-Za-z0-9_-]{22,128}")  # base64url of 16 bytes or more, no padding
CACHED = 4096  # writers whose packed memory a web process keeps (~10 KB each at most)


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
    def __init__(self, store: FeedbackStore, size: int = CACHED):
        self.store = store
        self.size = size
        self.packed: OrderedDict[str, tuple[tuple[int, ...], bytes]] = OrderedDict()

    async def memory(self, writer: str | None) -> bytes:
        """The writer's memory as the handler's part, b"" when there is none (or no writer, or no database)."""
        if writer is None:
            return b""
        try:
            ids = await self.store.memory_ids(writer)
        except StoreUnavailable:
            return b""
        cached = self.packed.get(writer)
        if cached is not None and cached[0] == ids:
            self.packed.move_to_end(writer)
            return cached[1]
        if not ids:
            self.packed.pop(writer, None)
            return b""
        try:
            rows = await self.store.memory(writer, ids)
        except StoreUnavailable:
            return b""
        kept = [rows[i] for i in ids if i in rows]
        blob = pack([label for label, _ in kept], [image for _, image in kept])
        self.packed[writer] = (ids, blob)
        while len(self.packed) > self.size:
            self.packed.popitem(last=False)
        return blob

    def forgotten(self, writer: str) -> None:
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
    writers.forgotten(writer)
    return web.json_response({"deleted": deleted})
