"""Numbers written with real pen digits: 2-6 digits of one writer on one canvas, as a person writes a date,
an amount or a code. Training may use writers 1-20 (pendigits.trainable); writers 21-30
(pendigits.held_out) are for measuring only (bench/read_accuracy.py, `make evaluate`; docs/reading.md).

compose() writes the digits left to right on one baseline, each digit's strokes scaled to one common
height (35-80% of the canvas height, all shrunk when the number would not fit the width with a margin),
each moved up or down a little (JITTER), with one round brush of 8-20 px (at most a third of the strokes'
height, never under 8 px: small digits, as six on a 280x280 canvas are, are not made blots by a broad
brush). Sizes and gaps are in units of H, the digit height as drawn: the strokes' height plus the brush.
The gap between consecutive digits' ink boxes:
  apart     0.25-0.6 H
  close     0.02-0.19 H (at least 2 px: a gap one can see)
  touching  from boxes side by side, the next digit moves left until its strokes first touch the
            previous digit's (centre lines within TOUCH brush widths: one piece of ink), then 0-0.08 H
            further (crossing them), unless that takes it clear again.
Rendered by pendigits.render, as a canvas draws (round caps and joins, antialiased).
"""

import random
from dataclasses import dataclass
from itertools import product

import numpy as np

from train import pendigits

CANVASES = ((560, 280), (280, 280))
# apart and close: the gap between ink boxes; touching: how far past the strokes' first contact (H)
SPACINGS = {"apart": (0.25, 0.6), "close": (0.02, 0.19), "touching": (0.0, 0.08)}
LENGTHS = (2, 6)  # digits per number
HEIGHT = (0.35, 0.8)  # the strokes' height, as a share of the canvas height
BRUSH = (8, 20)  # px
HEIGHT_IN_BRUSHES = 3  # the brush is at most the strokes' height / 3 (never below BRUSH[0])
JITTER = 0.05  # each digit up or down by up to this share of the strokes' height
MARGIN = 4  # px between the ink and the canvas's edge
CLOSE_PX = 2  # the least gap of "close", px
EDGE_PX = 2  # apart: this many px more than the share of H, for the antialiased edges
TOUCH = 0.8  # strokes touch when their centre lines come within this many brush widths
# The pen's times (page_strokes): its speed in digit heights a second, its pauses in ms between the
# strokes of a digit and between digits.
PEN_SPEED = (3.0, 8.0)
LIFT = (80.0, 300.0)
NEXT = (150.0, 700.0)


@dataclass(frozen=True)
class Number:
    png: bytes
    label: str
    boxes: list  # per digit, left to right: (x, y, w, h) of its ink in canvas pixels
    canvas: tuple  # (width, height)
    spacing: str
    writer: int
    drawings: (
        list  # per digit, its pendigits.Drawing in canvas pixels (train/number_pieces.py labels by them)
    )


def place(digits: list, rng: random.Random, canvas=(560, 280), spacing: str = "apart") -> list:
    """One pendigits.Drawing per digit, in canvas pixels, sharing one brush: the number's layout."""
    width, height = canvas
    shapes = [_unit(d.strokes) for d in digits]  # strokes of height 1, left edge at 0, y down
    aspects = [max(x for s in strokes for x, _ in s) for strokes in shapes]
    gaps = [rng.uniform(*SPACINGS[spacing]) for _ in digits[1:]]
    jitters = [rng.uniform(-JITTER, JITTER) for _ in digits]
    brush, h = rng.uniform(*BRUSH), rng.uniform(*HEIGHT) * height
    # the ink's width is h * sum(aspects) + a brush per digit + the gaps (H = h + brush each)
    room = width - 2 * MARGIN - max(CLOSE_PX, EDGE_PX) * len(gaps)
    wider = sum(gaps) if spacing != "touching" else 0  # touching digits overlap: fitted as if they did not

    def fit(brush: float) -> float:
        wide = (room - brush * (len(digits) + wider)) / (sum(aspects) + wider)
        return min(h, wide, (height - 2 * MARGIN - brush) / (1 + 2 * JITTER))

    brush = min(brush, max(BRUSH[0], fit(brush) / HEIGHT_IN_BRUSHES))
    h = fit(brush)
    big = h + brush  # H
    inks = [a * h + brush for a in aspects]  # the ink boxes' widths
    pixels = [{"apart": g * big + EDGE_PX, "close": max(g * big, CLOSE_PX)}.get(spacing, 0) for g in gaps]
    total = h * sum(aspects) + brush * len(digits) + sum(pixels)
    left = rng.uniform(MARGIN, max(MARGIN, width - MARGIN - total)) + brush / 2  # strokes' left edge
    base = rng.uniform(MARGIN + brush / 2 + h * (1 + JITTER), height - MARGIN - brush / 2 - h * JITTER)
    drawings = []
    for i, (digit, shape, jitter) in enumerate(zip(digits, shapes, jitters, strict=True)):
        top = base + (jitter - 1) * h
        drawing = _at(digit.label, shape, left, top, h, brush)
        if drawings and spacing == "touching":  # from boxes side by side, left to the first contact
            lo, hi = _contacts(drawings[-1], drawing)
            first = max(0.0, lo[hi >= 0].min())
            further = first + gaps[i - 1] * big
            left -= further if ((lo <= further) & (further <= hi)).any() else first  # not crossed and clear
            drawing = _at(digit.label, shape, left, top, h, brush)
        drawings.append(drawing)
        left += inks[i] + (pixels[i] if i < len(pixels) else 0)
    return drawings


def compose(digits: list, rng: random.Random, canvas=(560, 280), spacing: str = "apart"):
    """(PNG bytes, label string, ink boxes (x, y, w, h) left to right) of the digits written as a number."""
    drawings = place(digits, rng, canvas, spacing)
    return drawn_png(drawings, canvas), "".join(str(d.label) for d in digits), [box(d) for d in drawings]


def drawn_png(drawings: list, canvas) -> bytes:
    """The PNG of these drawings (canvas pixels) on one canvas of `canvas` (width, height)."""
    strokes = [stroke for d in drawings for stroke in d.strokes]
    return pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, strokes, drawings[0].brush), canvas))


def numbers(digits: list, count: int, rng: random.Random, canvases=CANVASES, spacings=tuple(SPACINGS)):
    """`count` Numbers of LENGTHS digits, each of one writer's digits (of those in `digits`, e.g.
    pendigits.held_out(pendigits.load())), the canvases and spacings taken in turn (balanced)."""
    by_writer: dict[int, list] = {}
    for d in digits:
        by_writer.setdefault(d.writer, []).append(d)
    writers, kinds = sorted(by_writer), list(product(spacings, canvases))
    found = []
    for i in range(count):
        writer = rng.choice(writers)
        spacing, canvas = kinds[i % len(kinds)]
        chosen = rng.sample(by_writer[writer], rng.randint(*LENGTHS))
        drawings = place(chosen, rng, canvas, spacing)  # compose(), keeping the drawings
        label = "".join(str(d.label) for d in chosen)
        found.append(
            Number(
                drawn_png(drawings, canvas),
                label,
                [box(d) for d in drawings],
                canvas,
                spacing,
                writer,
                drawings,
            )
        )
    return found


def held_out(count: int, seed: int = 0) -> list[Number]:
    """`count` numbers of writers 21-30's digits, to measure on (bench/read_accuracy.py, `make evaluate`)."""
    return numbers(pendigits.held_out(pendigits.load()), count, random.Random(seed))


def read_all(bodies: list, model, pieces=None) -> list[tuple[int, dict]]:
    """(status, answer) per drawing as the handler answers a number, in-process: handler/answers.py's
    read_number with a TorchScript model (a path or a file object) and, where given, its piece reader
    (pieces.pt: train/piece_reader.py); a refusal is (422, {"reason": ...})."""
    import warnings

    import torch

    from handler.answers import read_number
    from handler.errors import InputError

    # TorchScript is deprecated upstream and torch.jit.load says so; we use it knowingly.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
    torch.set_num_threads(1)  # small batches: more threads only contend (10x slower on the 2 cores here)
    probabilities_of = softmax_of(torch.jit.load(model, map_location="cpu").eval())
    pieces_of = softmax_of(torch.jit.load(pieces, map_location="cpu").eval()) if pieces is not None else None

    answers = []
    for body in bodies:
        try:
            answers.append((200, read_number(body, probabilities_of, pieces_of)))
        except InputError as e:
            answers.append(
                (getattr(e, "status", 400), {"error": str(e), "reason": getattr(e, "reason", None)})
            )
    return answers


def softmax_of(net):
    """(n, 28, 28) images -> a TorchScript network's softmax outputs, as read_number takes them."""
    import torch

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(net(torch.from_numpy(images).unsqueeze(1)), 1).numpy()

    return run


def page_strokes(drawings: list, rng: random.Random) -> list:
    """The strokes of these drawings (canvas pixels) as the page sends them beside the image (docs/api.md):
    in drawing order, digit by digit, each point [x, y, t] with t in ms. Pen digits keep their points'
    order but not their times: the pen moves at one speed per number (PEN_SPEED digit heights a second)
    and lifts for a pause between the strokes of a digit (LIFT) and a longer one between digits (NEXT)."""
    strokes = [s for d in drawings for s in d.strokes]
    _, _, low, high = pendigits.extent(strokes)
    speed = rng.uniform(*PEN_SPEED) * max(high - low, 1) / 1000  # px per ms
    sent, t = [], rng.uniform(0, 1000)
    for i, drawing in enumerate(drawings):
        for j, stroke in enumerate(drawing.strokes):
            t += rng.uniform(*(LIFT if j else NEXT)) if i or j else 0
            points = np.asarray(stroke, dtype=float)
            steps = np.hypot(*np.diff(points, axis=0).T) / speed
            times = t + np.concatenate([[0], np.cumsum(steps)])
            sent.append(np.round(np.column_stack([points, times]), 1).tolist())
            t = times[-1]
    return sent


def box(drawing: pendigits.Drawing) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a drawing's ink in whole pixels (the strokes' extent and half a brush around, and
    half a pixel more: the supersampled brush spills over)."""
    left, right, top, bottom = pendigits.extent(drawing.strokes)
    r = drawing.brush / 2 + 0.5
    x, y = int(np.floor(left - r)), int(np.floor(top - r))
    return x, y, int(np.ceil(right + r)) - x, int(np.ceil(bottom + r)) - y


def _unit(strokes) -> list:
    left, _, low, high = pendigits.extent(strokes)
    size = max(high - low, 1)
    return [[((x - left) / size, (high - y) / size) for x, y in stroke] for stroke in strokes]


def _at(label: int, shape: list, left: float, top: float, h: float, brush: float) -> pendigits.Drawing:
    return pendigits.Drawing(label, [[(left + x * h, top + y * h) for x, y in s] for s in shape], brush)


def _contacts(a: pendigits.Drawing, b: pendigits.Drawing) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of centre-line points of a and b that can meet: the range [lo, hi] of leftward shifts of b
    over which they are within TOUCH brush widths (round brushes: the two inks overlap)."""
    p, q = _dense(a.strokes), _dense(b.strokes)
    near = TOUCH * a.brush
    dy = np.abs(p[:, None, 1] - q[None, :, 1])
    meet = dy <= near
    reach = np.sqrt(near**2 - dy[meet] ** 2)
    dx = (q[None, :, 0] - p[:, None, 0])[meet]
    return dx - reach, dx + reach


def _dense(strokes) -> np.ndarray:
    """The strokes' centre lines as points at most a pixel apart."""
    points = []
    for stroke in strokes:
        s = np.asarray(stroke, dtype=float)
        points.append(s[:1])
        for a, b in zip(s[:-1], s[1:], strict=True):
            n = max(1, int(np.ceil(np.hypot(*(b - a)))))
            points.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
    return np.concatenate(points)
