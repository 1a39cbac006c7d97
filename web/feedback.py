"""POST /api/feedback: the page says which digit was really drawn (or that the answer was right).

    {"image": "<the data URL sent to /predict>", "label": 0-9, "predicted": 0-9, "version": "<answering version>",
     "ticket": "<the answer's ticket>"}

Only for answers given: the ticket /predict gave with the answer (web/tickets.py) must match the image,
predicted and version, be at most FEEDBACK_TICKET_MAX_AGE old and unused (403 otherwise, 409 when used for
other feedback; the same feedback again is 201 with its first id, so a retry after a 503 is safe).

label and predicted may also be "not_a_digit" (stored as 10): "right, not a digit" is a rejected drawing
confirmed, and a digit label on a rejected drawing corrects it (docs/not-a-digit.md).

Feedback on a number /read answered (the page's form since issue 27), stored in its own table:

    {"image": "<the data URL sent to /read>", "number": "<meant: 1-16 digits>", "predicted": "<the answered
     number>" or null (a piece was not a digit), "version": "...", "ticket": "<the /read answer's ticket>"}

The ticket signs the answered number, or "null" (web/tickets.py number_answered). number may also be
"not_a_digit": what was drawn is not a number at all ("right, not a digit" on a drawing /read judged so).

201 {"id": n} once the row is committed; 4xx {"error": ...} for bad feedback (nothing stored); 503 when the
database cannot be written (locked, broken, not answering: within 2 s, web/feedback_store.py): /predict
and /read only read writers' memories from it, waiting 0.25 s at most (web/writers.py), so they are
unaffected. No IP address, cookie or header is stored: only the drawing's ink (a bounded PNG,
stored_drawing), what the model saw, the two digits, the version and the time (and, with X-Writer, the
hash of the writer's id beside the memory's copy of the 28x28: below).

With header X-Writer (web/writers.py), a correction, or a confirmation of an answer shown "not sure" (the
ticket says so), also joins that writer's memory (docs/writers.md), in the same request: its 28x28 and the
label meant, keyed by the hash of the id.
"""

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from aiohttp import web

from handler.decode import decode, payload_to_bytes
from handler.errors import InputError, UnsupportedMediaError
from handler.ink import WORK_SIDE, ink_map
from handler.mnist_form import to_mnist
from handler.segment import MAX_DIGITS, MAX_STRIP, number_side
from web.errors import error
from web.feedback_store import (
    NOT_A_DIGIT,
    NOT_A_NUMBER,
    FeedbackStore,
    StoreUnavailable,
    TicketReused,
)
from web.metrics import FEEDBACK_REFUSED, FEEDBACK_STORED, NUMBER_FEEDBACK_STORED
from web.registry import VERSION_RE
from web.tickets import NUMBER_NOT_READ, TicketError, Tickets, drawing_hash, was_unsure
from web.uploads import body_deadline
from web.writers import WRITERS, BadWriter, writer_key

NUMBER_RE = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")  # ASCII digits only (str.isdigit takes "٤٢" too)


@dataclass
class Feedback:
    store: FeedbackStore
    # web.registry.model_versions for our model: the versions TorchServe has registered are the only ones
    # that get a metrics label of their own, since a feedback body's version is whatever a client wrote.
    model_versions: Callable[[], dict]
    tickets: Tickets


FEEDBACK = web.AppKey("feedback", Feedback)


async def open_feedback_store(app: web.Application):
    """cleanup_ctx: create or migrate the schema at start-up. A database that cannot be opened does not
    stop the app (predictions need none): feedback answers 503 and tries again on the next request."""
    store = app[FEEDBACK].store
    try:
        await store.open()
    except StoreUnavailable as e:
        print(f"feedback disabled until the database can be opened: {e}", flush=True)
    yield
    await store.close()


async def post_feedback(request: web.Request) -> web.Response:
    feedback = request.app[FEEDBACK]
    try:
        writer = writer_key(request)  # docs/writers.md: a malformed X-Writer is a 400 before anything
        if request.content_type != "application/json":
            # Also keeps other sites' pages from posting through visitors' browsers: a cross-origin JSON
            # request needs a CORS preflight, which this app never grants.
            raise UnsupportedMediaError("send the feedback as JSON (Content-Type: application/json)")
        async with body_deadline(request):
            body = await request.read()
        item = parse_feedback(body)
        number = "number" in item
        answered = item["predicted"] if not number or item["predicted"] is not None else NUMBER_NOT_READ
        sha256 = drawing_hash(item["image"])
        ticket_id = feedback.tickets.check(item.get("ticket"), sha256, item["version"], answered)
        # Decoding and the 28x28 take a millisecond or more of CPU: off the event loop, /predict goes on.
        png, input_28x28 = await asyncio.to_thread(drawing_and_input, item["image"], number)
    except BadWriter as e:
        FEEDBACK_REFUSED.labels("bad_request").inc()
        return error(400, str(e))
    except InputError as e:
        FEEDBACK_REFUSED.labels("ticket" if isinstance(e, TicketError) else "bad_request").inc()
        return error(e.status, str(e))
    common = {"version": item["version"], "predicted": item["predicted"], "png": png, "ticket_id": ticket_id}
    common["png_sha256"] = sha256  # of the bytes sent: the same drawing sent twice, the same hold-out side
    try:
        if number:  # the 28x28 of the whole drawing means nothing for a number: training cuts it again
            row_id = await feedback.store.add_number(number=item["number"], **common)
        else:
            row_id = await feedback.store.add(label=item["label"], input_28x28=input_28x28, **common)
    except TicketReused:
        FEEDBACK_REFUSED.labels("ticket_reused").inc()
        return error(409, "ticket already used: each answer takes one feedback")
    except StoreUnavailable as e:
        FEEDBACK_REFUSED.labels("database").inc()
        print(e, flush=True)
        return error(503, "feedback cannot be saved right now; try again in a moment")
    remembered = to_remember(item, was_unsure(ticket_id))
    if writer is not None and remembered is not None:  # with its ticket: within the feedback rate limit
        try:
            await feedback.store.remember(writer, remembered, input_28x28)
            request.app[WRITERS].changed(writer)
        except StoreUnavailable as e:  # the feedback is stored; only the writer's memory misses it
            print(e, flush=True)
    version = item["version"] if item["version"] in feedback.model_versions()["versions"] else "unregistered"
    if number:
        meant = None if item["number"] == NOT_A_NUMBER else item["number"]
        NUMBER_FEEDBACK_STORED.labels(version, "right" if meant == item["predicted"] else "wrong").inc()
    else:
        FEEDBACK_STORED.labels(version, "right" if item["label"] == item["predicted"] else "wrong").inc()
    return web.json_response({"id": row_id}, status=201)


def to_remember(item: dict, unsure: bool) -> int | None:
    """The label a feedback adds to its writer's memory (docs/writers.md), or None: a correction, or a
    confirmation of an answer shown "not sure". A number's only when the meant number is one digit (or
    not a digit at all): the drawing is then one piece, whose 28x28 is /predict's (input_28x28)."""
    if "number" in item:
        meant, predicted = item["number"], item["predicted"]
        if meant == NOT_A_NUMBER:
            label, right = NOT_A_DIGIT, predicted is None
        elif len(meant) == 1:
            label, right = int(meant), predicted == meant
        else:
            return None
    else:
        label, right = item["label"], item["label"] == item["predicted"]
    return label if not right or unsure else None


def parse_feedback(body: bytes) -> dict:
    """The feedback document, checked: the digit form ({"label", ...}) or the number form ({"number", ...})."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise InputError('the body must be JSON: {"image", "label", "predicted", "version", "ticket"}')
    if not isinstance(doc, dict):
        raise InputError(
            'the body must be a JSON object: {"image", "label", "predicted", "version", "ticket"}'
        )
    if "number" in doc:
        _check_number(doc)
    else:
        _check_digit(doc)
    version = doc.get("version")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise InputError("version must be the version that answered (letters, digits, '.', '_' or '-')")
    if not isinstance(doc.get("ticket"), str) or not doc["ticket"]:
        raise InputError("ticket must be the ticket that came with the answer (/predict or /read)")
    if not isinstance(doc.get("image"), str) or not doc["image"].strip():
        raise InputError("image must be the data URL that was sent to /predict or /read")
    return doc


def _check_digit(doc: dict) -> None:
    for field in ("label", "predicted"):
        value = doc.get(field)
        if value == "not_a_digit":
            doc[field] = NOT_A_DIGIT
        # bool is an int in Python; true is not a digit.
        elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
            raise InputError(f'{field} must be a whole number from 0 to 9, or "not_a_digit"')


def _is_number(value) -> bool:
    return isinstance(value, str) and NUMBER_RE.fullmatch(value) is not None


def _check_number(doc: dict) -> None:
    if "label" in doc:
        raise InputError(
            'send "label" (a digit /predict answered) or "number" (a number /read read), not both'
        )
    if not (_is_number(doc["number"]) or doc["number"] == NOT_A_NUMBER):
        raise InputError(
            f'number must be the number meant, 1 to {MAX_DIGITS} digits 0-9 as text, or "not_a_digit"'
        )
    if "predicted" not in doc or not (doc["predicted"] is None or _is_number(doc["predicted"])):
        raise InputError("predicted must be the number /read answered (its digits as text), or null if none")


def drawing_and_input(image: str, number: bool = False) -> tuple[bytes, bytes]:
    """The drawing as a row keeps it (stored_drawing) and the 28x28 the model saw (handler/mnist_form.py,
    the serving code), or InputError if it is not a drawing (not an image, blank, only specks). A
    number's drawing is kept at the resolution /read cuts it at, a digit's at the one /predict reads."""
    picture = decode(payload_to_bytes(image))
    ink = ink_map(picture)
    digit = to_mnist(ink)
    kept = stored_drawing(ink_map(picture, side=number_side) if number else ink)
    return kept, (digit * 255).round().astype(np.uint8).tobytes()


# A row keeps the drawing's ink, not the client's bytes (up to ~750 KB of image in a 1 MiB body): a
# grayscale PNG, dark ink on white, of the ink preprocessing worked from (under 2 x WORK_SIDE on the
# side it shrinks by), so training cuts and reads it as it was served: the same ink, the same 28x28
# (docs/database.md, "What a row keeps"). Past these bounds (only a drawing made to pass them, or noise)
# it is halved until it fits.
STORED_SIDE = MAX_STRIP * WORK_SIDE  # 1120: the longest side /read works at for a strip as tall as WORK_SIDE
# A drawing's PNG at most: the page's canvas keeps ~0.7 KB (a digit), ~2.7 KB (a number).
STORED_BYTES = 16 * 1024


def stored_drawing(ink: np.ndarray) -> bytes:
    """ink (uint8 HxW, 255 = ink) as a grayscale PNG of at most STORED_SIDE on its longer side and at most
    STORED_BYTES, halved (2x2 means) until it is both."""
    while True:
        if max(ink.shape) <= STORED_SIDE:
            png = cv2.imencode(".png", 255 - ink, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
            if len(png) <= STORED_BYTES:
                return png
        height, width = max(1, ink.shape[0] // 2), max(1, ink.shape[1] // 2)
        ink = cv2.resize(ink[: 2 * height, : 2 * width], (width, height), interpolation=cv2.INTER_AREA)
