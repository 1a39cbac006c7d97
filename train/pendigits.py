"""Real pen-stroke digits (UCI pendigits, UNIPEN format) rendered the way a browser canvas draws them.

The file holds 7,494 digits by 30 writers: `.SEGMENT DIGIT ... "<label>"`, `.COMMENT <label> <writer>
<n>`, then strokes as `.PEN_DOWN`, "x y" lines, `.PEN_UP`; coordinates 0..500 with the y axis up.
Evaluation holds out whole writers (HELD_OUT_WRITERS) so a score says how the app reads people it has
never seen.

A drawing is laid out like a person would on a 280x280 canvas: a random brush of 8-20 px, a digit
height of 35-85% of the canvas, a random position (fixed seed), round caps and joins, antialiased.
"""

import io
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SHARED_PATH = ROOT.parent / "shared" / "pen-digits" / "pendigits-orig.tra"
DATA_PATH = ROOT / "data" / "pen-digits" / "pendigits-orig.tra"  # where train/pen_download.py puts it
# PEN_DIGITS if set, else the team's shared copy, else data/ (downloaded there by `make train`).
PATH = Path(os.environ.get("PEN_DIGITS") or (SHARED_PATH if SHARED_PATH.exists() else DATA_PATH))
HELD_OUT_WRITERS = set(range(21, 31))  # writers 21..30: never trained on, the benchmark's part
# With TUNE=1 (train/train.py) writers 17..20 leave training and become the tuning set, so recipe choices
# (augmentation, copies, model) are judged on writers we trained without, never on writers 21..30.
TUNE_WRITERS = set(range(17, 21))
# Every VALIDATION_EVERY-th digit of the trainable writers (in the file's order) leaves training: held-out
# drawings of the training writers, on which (with MNIST's validation split) the "not a digit" threshold
# is chosen (train/train.py). Writers 21-30 stay for measuring only.
VALIDATION_EVERY = 20
CANVAS = 280
SUPERSAMPLE = 4  # draw 4x larger and shrink: the antialiasing a canvas does


@dataclass(frozen=True)
class PenDigit:
    label: int
    writer: int
    strokes: tuple  # tuple of strokes, each a tuple of (x, y) in the file's coordinates (y up)


@dataclass(frozen=True)
class Drawing:
    label: int
    strokes: list  # strokes in canvas pixels (y down)
    brush: float  # line width in canvas pixels


def load(path: Path = PATH) -> list[PenDigit]:
    digits, strokes, stroke, label, writer = [], [], None, None, None
    for line in Path(path).read_text().splitlines():
        if line.startswith(".SEGMENT"):
            if label is not None:
                digits.append(PenDigit(label, writer, tuple(strokes)))
            label, writer, strokes = int(re.search(r'"(\d)"', line).group(1)), None, []
        elif line.startswith(".COMMENT") and label is not None:
            writer = int(line.split()[2])
        elif line.startswith(".PEN_DOWN"):
            stroke = []
        elif line.startswith(".PEN_UP"):
            if stroke:
                strokes.append(tuple(stroke))
            stroke = None
        elif stroke is not None and line.strip():
            x, y = line.split()
            stroke.append((int(x), int(y)))
    if label is not None:
        digits.append(PenDigit(label, writer, tuple(strokes)))
    return digits


def held_out(digits: list[PenDigit]) -> list[PenDigit]:
    return [d for d in digits if d.writer in HELD_OUT_WRITERS]


def trainable(digits: list[PenDigit], tune: bool = False) -> list[PenDigit]:
    return [d for i, d in enumerate(_of_training_writers(digits, tune)) if i % VALIDATION_EVERY]


def validation(digits: list[PenDigit], tune: bool = False) -> list[PenDigit]:
    """The trainable writers' digits kept out of training, to choose the rejection threshold on."""
    return [d for i, d in enumerate(_of_training_writers(digits, tune)) if not i % VALIDATION_EVERY]


def _of_training_writers(digits: list[PenDigit], tune: bool) -> list[PenDigit]:
    return [d for d in digits if d.writer not in HELD_OUT_WRITERS | (TUNE_WRITERS if tune else set())]


def tuning(digits: list[PenDigit]) -> list[PenDigit]:
    return [d for d in digits if d.writer in TUNE_WRITERS]


def earlier(digits: list[PenDigit]) -> list[PenDigit]:
    """The first half of each held-out writer's digits, in the file's order: what a new writer would have
    drawn, and corrected, on the page before (scripts/pen_feedback.py stores them as feedback)."""
    return _halves(held_out(digits))[0]


def later(digits: list[PenDigit]) -> list[PenDigit]:
    """The other half of each held-out writer's digits: what a model trained on `earlier` is measured on."""
    return _halves(held_out(digits))[1]


def _halves(digits: list[PenDigit]) -> tuple[list[PenDigit], list[PenDigit]]:
    by_writer: dict[int, list[PenDigit]] = {}
    for d in digits:
        by_writer.setdefault(d.writer, []).append(d)
    first = {id(d) for mine in by_writer.values() for d in mine[: len(mine) // 2]}
    return [d for d in digits if id(d) in first], [d for d in digits if id(d) not in first]


def extent(strokes: list) -> tuple[float, float, float, float]:
    """(left, right, low, high) of the strokes' points: x from left to right, y from low to high."""
    xs = [x for stroke in strokes for x, _ in stroke]
    ys = [y for stroke in strokes for _, y in stroke]
    return min(xs), max(xs), min(ys), max(ys)


def layout(digit: PenDigit, rng: random.Random, canvas: int = CANVAS) -> Drawing:
    """Place a digit on the canvas as a person might: random brush, size and position."""
    brush = rng.uniform(8, 20)
    x0, x1, y0, y1 = extent(digit.strokes)
    width, height = x1 - x0, y1 - y0
    scale = rng.uniform(0.35, 0.85) * canvas / max(height, 1)
    scale = min(scale, (canvas - brush - 4) / max(width, 1))  # a wide digit must still fit
    left = rng.uniform(brush / 2 + 2, canvas - brush / 2 - 2 - width * scale)
    top = rng.uniform(brush / 2 + 2, canvas - brush / 2 - 2 - height * scale)
    strokes = [
        [(left + (x - x0) * scale, top + (y1 - y) * scale) for x, y in stroke] for stroke in digit.strokes
    ]
    return Drawing(digit.label, strokes, brush)


def render(
    drawing: Drawing,
    canvas: int | tuple[int, int] = CANVAS,
    transparent: bool = False,
    supersample: int = SUPERSAMPLE,
) -> Image.Image:
    """Black ink on white (the page's canvas), or on a transparent canvas: round caps/joins, antialiased.
    canvas: a side, or (width, height) for a canvas that is not square (train/numbers.py)."""
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    k = supersample
    image = Image.new("L", (width * k, height * k), 0)
    draw = ImageDraw.Draw(image)
    radius = drawing.brush * k / 2
    for stroke in drawing.strokes:
        points = [(x * k, y * k) for x, y in stroke]
        if len(points) > 1:
            draw.line(points, fill=255, width=round(drawing.brush * k))
        for x, y in points:  # round caps and joins
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    ink = image.resize((width, height), Image.Resampling.BOX)
    if transparent:
        rgba = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        rgba.putalpha(ink)
        return rgba
    return Image.eval(ink, lambda v: 255 - v)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
