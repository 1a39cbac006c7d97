"""Drawings that reach the web app together travel to TorchServe together; a lone one waits for nothing.

TorchServe batches only by holding each request up to maxBatchDelay for company: at least 1 ms even when
no company can come (the smallest delay a model config takes; 0 means its default, 100 ms). So the
model takes one request at a time (batchSize 1, handler/model-config.yaml) and the batches form here:
a drawing that finds no request of its version at the model goes at once, alone, as the plain request
it came as (a number to read: a request of one part, below). Drawings that arrive while one is out
queue up. They go, as one multipart request (handler/mnist_handler.py), when it comes back, or as soon
as they are as many as went last (max_batch at most): then they join it, up to in_flight requests out,
and wait at TorchServe, so the worker starts on them the moment it finishes instead of idling through a
round trip to the web app. Batches so grow with the load and stay even: 2 clients make 1 + 1,
pipelined; 16 make 8 + 8. At 1 client nothing waits.

Each drawing has a kind: DRAWING (one digit, /predict) or NUMBER (a number to read, /read). Both share
the queue and the batches; a part is named by its kind and its place in the request (drawing-0,
number-1, ...) and the handler answers each part as that kind. A lone /predict drawing goes as its plain
body, as ever; a lone /read drawing goes as a multipart request of one part, number-0 (a plain body
is a digit to the handler). Each drawing's reply comes back with the work it was, the images of it the
model read (Reply.pieces): /read is charged by them (web/ratelimit.py).

Waiting drawings queue per client (the rate limiter's key, web/ratelimit.py), each client's in their
arrival order, and a batch takes one from each client in turn, starting after the client served last.
So a drawing waits behind at most one drawing of each other client, never behind another client's
burst: beside one client flooding, the other's drawing goes in the next batch sent. Why: in one queue,
a flood in lockstep (docs/limits.md, "A flood beside a well-behaved client") put every request its
token bucket let through ahead of the other client's, whose p99 rose 4x while the limit held.

A drawing may carry its writer's memory (web/writers.py): it then travels as a part beside it, memory-N,
and a lone /predict drawing with one goes as a request of parts (drawing-0, memory-0).

A batch that fails (a 5xx, a reset, a worker killed under it) is asked again once, drawing by drawing, on
a fresh connection: one drawing that makes the handler raise, or a worker's death, then fails nobody else.
"""

import asyncio
import json
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import aiohttp

from web.background import drain
from web.metrics import BATCH_SIZE, RETRIED


class Reply(NamedTuple):
    """TorchServe's status and body for one drawing, and the images of it the model read: a number's
    candidate pieces as the handler counts them (what /read is charged by: web/ratelimit.py), a digit's 1
    (a plain answer does not say), 0 when the handler did not answer it."""

    status: int
    body: bytes
    pieces: int = 1


# ask(body, version, content type) -> TorchServe's status and body for that one request (web/app.py: ask_model)
Ask = Callable[[bytes, str, str], Awaitable[tuple[int, bytes]]]

# A drawing's kind, and the handler's name for its part, before its index: "drawing-0", "number-1", ...
DRAWING, NUMBER = "drawing", "number"
# A batch's body stays under TorchServe's max_request_size (2 MiB, config.properties) with room to spare:
# a canvas is 10-50 KB, so this only ever stops a batch of unusually large images from growing.
MAX_BATCH_BYTES = 1024 * 1024


@dataclass
class _Line:
    """The drawings of one version waiting to go, and how many of its requests are at the model."""

    # client -> deque of (kind, body, future) in arrival order; the clients in their turn to be served.
    # A client leaves once it has nothing waiting: the map holds only clients with drawings waiting.
    waiting: OrderedDict = field(default_factory=OrderedDict)
    queued: int = 0  # drawings waiting, of every client
    out: int = 0
    last: int = 0  # drawings in the last request sent


class Batcher:
    def __init__(
        self,
        ask: Ask,
        max_batch: int = 8,
        in_flight: int = 2,
        timeout: float = 5.0,
        ask_again: Ask | None = None,
    ):
        self.ask = ask
        self.ask_again = ask_again or ask  # a failed batch's drawings, each alone: on a fresh connection
        self.max_batch = max_batch
        self.in_flight = in_flight
        # A drawing's answer comes within this, its wait in the queue included (the session's own
        # timeout starts only when its request is sent).
        self.timeout = timeout
        self.lines: dict[str, _Line] = {}  # by version; a line goes once it is idle (?version= is free text)
        self.tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def predict(
        self, version: str, body: bytes, kind: str = DRAWING, client: str = "", memory: bytes = b""
    ) -> Reply:
        """TorchServe's reply to this drawing (of this kind, from this client) alone, as if it had been sent
        alone; raises what the session raises (timeouts, connection errors) for every drawing of a batch
        that met it, and TimeoutError when no answer came within the timeout (a drawing still waiting is
        then not sent). memory: the writer's memory (web/writers.py), sent beside the drawing as its part
        memory-N; b"" for none."""
        line = self.lines.get(version) or self.lines.setdefault(version, _Line())  # no new _Line per call
        answered = asyncio.get_running_loop().create_future()
        # A client with nothing waiting joins at the end of the turn; no deque is stored empty.
        drawings = line.waiting.get(client) or line.waiting.setdefault(client, deque())
        drawings.append((kind, body, memory, answered))
        line.queued += 1
        if self._ready(line):
            self._send_next(version, line)
        return await asyncio.wait_for(answered, self.timeout)

    def _ready(self, line: _Line) -> bool:
        """Send now: nothing of this version is at the model, or as many wait (every client's) as went
        last (a full batch at most) and may join what is out. So the worker is fed without waiting for a
        round trip, and batches stay even: 2 clients make 1 + 1, pipelined; 16 make 8 + 8."""
        return line.queued > 0 and (
            line.out == 0 or (line.out < self.in_flight and line.queued >= min(line.last, self.max_batch))
        )

    def _send_next(self, version: str, line: _Line) -> None:
        """A batch of the line's waiting drawings, one from each client in turn (round robin)."""
        batch, size = [], 0
        while line.waiting and len(batch) < self.max_batch:
            client, drawings = next(iter(line.waiting.items()))  # the client whose turn it is
            kind, body, memory, answered = drawings[0]
            if batch and size + len(body) + len(memory) > MAX_BATCH_BYTES:
                break  # that client stays first: its drawing opens the next batch
            drawings.popleft()
            line.queued -= 1
            if drawings:
                line.waiting.move_to_end(client)  # its next drawing waits for the others' turns
            else:
                del line.waiting[client]
            if not answered.done():  # a client that went away while it waited is sent nothing
                batch.append((kind, body, memory, answered))
                size += len(body) + len(memory)
        if not batch:
            return
        line.out += 1
        line.last = len(batch)
        task = asyncio.create_task(self._send(version, line, batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, version: str, line: _Line, batch: list) -> None:
        BATCH_SIZE.observe(len(batch))
        try:
            try:
                replies = await self._ask_batch(self.ask, version, [drawing[:3] for drawing in batch])
            except (OSError, aiohttp.ClientError):
                replies = None  # a reset, a refused connection, a worker that died with the batch
            if replies is None or any(failed(reply) for reply in replies):
                replies = await self._again_alone(version, batch, replies)
            for (*_, answered), reply in zip(batch, replies, strict=True):
                if not answered.done():
                    answered.set_result(reply)
        except Exception as error:  # handed to every request of the batch, raised there
            for *_, answered in batch:
                if not answered.done():
                    answered.set_exception(error)
        finally:
            for *_, answered in batch:  # only if this send was cancelled (shutdown)
                if not answered.done():
                    answered.cancel()
            line.out -= 1
            while self._ready(line):
                self._send_next(version, line)
            self._forget_if_idle(version, line)

    @staticmethod
    async def _ask_batch(ask: Ask, version: str, drawings: list[tuple]) -> list[Reply]:
        """drawings: (kind, body) or (kind, body, memory) each."""
        if len(drawings) == 1 and drawings[0][0] == DRAWING and not _memory(drawings[0]):
            return [Reply(*await ask(drawings[0][1], version, "application/octet-stream"))]
        body, content_type = multipart(drawings)
        return split(await ask(body, version, content_type), len(drawings))

    async def _again_alone(self, version: str, batch: list, replies: list[Reply] | None) -> list[Reply]:
        """The batch's failed drawings asked again once, each alone, on a fresh connection (ask_again): a
        handler exception fails its whole batch (TorchServe answers every part 503), and a worker that
        dies fails what it held; a prediction is idempotent, so only a drawing that fails alone fails.
        A drawing still failing alone gets its own reply, or, when even that raises, the first one's."""
        todo = [i for i in range(len(batch)) if replies is None or failed(replies[i])]
        RETRIED.inc(len(todo))

        async def alone(i: int) -> Reply:
            *drawing, answered = batch[i]
            if answered.done():
                return Reply(499, b"", 0)  # its client went away: not asked again
            try:
                return (await self._ask_batch(self.ask_again, version, [tuple(drawing)]))[0]
            except (OSError, aiohttp.ClientError):
                if replies is None:
                    raise
                return replies[i]

        again = await asyncio.gather(*(alone(i) for i in todo))
        found = list(replies) if replies is not None else [None] * len(batch)
        for i, reply in zip(todo, again, strict=True):
            found[i] = reply
        return found

    def _forget_if_idle(self, version: str, line: _Line) -> None:
        if not line.out and not line.waiting and self.lines.get(version) is line:
            del self.lines[version]

    async def close(self, grace: float = 2.0) -> None:
        """On shutdown: let requests at the model finish for a moment, then cancel the rest."""
        await drain(self.tasks, grace)


def failed(reply: Reply) -> bool:
    """A reply worth asking again: TorchServe's or the handler's 5xx (a worker that died, a batch that
    raised), not a timeout (504: asking again would double a wait that is already too long) and never a
    drawing's own 4xx."""
    return reply.status >= 500 and reply.status != 504


def _memory(drawing: tuple) -> bytes:
    return drawing[2] if len(drawing) > 2 else b""


def multipart(drawings: list[tuple]) -> tuple[bytes, str]:
    """multipart/form-data with one part per (kind, body), named by its kind and place: drawing-0,
    number-1, ... (unique: TorchServe's frontend hands each part to the handler as a field of the
    request, by name, in their order); a drawing given as (kind, body, memory) with a memory has it in
    a part of its own after it, memory-N."""
    boundary = uuid.uuid4().hex
    while any(
        boundary.encode() in b for d in drawings for b in d[1:3]
    ):  # a 128-bit collision: never, but cheap
        boundary = uuid.uuid4().hex
    parts = []
    for i, drawing in enumerate(drawings):
        named = [(f"{drawing[0]}-{i}", drawing[1])] + (
            [(f"memory-{i}", _memory(drawing))] if _memory(drawing) else []
        )
        for name, body in named:
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            parts += [head.encode(), body, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def split(reply: tuple[int, bytes], count: int) -> list[Reply]:
    """The reply to a request of parts as the replies its drawings would have had alone, each as its kind
    (a number part's answer is a number's), with the pieces the handler read for it. Anything but the
    handler's list of answers (TorchServe's own errors: no worker, unknown version, refused key) is every
    drawing's reply, of no pieces."""
    status, body = reply
    if status != 200:
        return [Reply(status, body, 0)] * count
    try:
        parts = json.loads(body)
        # A version whose handler predates "pieces" does not say: its drawings count as one image each.
        replies = [
            Reply(
                int(p["status"]),
                json.dumps(p["answer"], separators=(",", ":")).encode(),
                int(p.get("pieces", 1)),
            )
            for p in parts
        ]
    except (ValueError, TypeError, KeyError):
        replies = []
    if len(replies) != count:
        broken = json.dumps({"message": f"the handler answered {count} drawings with something else"})
        return [Reply(500, broken.encode(), 0)] * count
    return replies
