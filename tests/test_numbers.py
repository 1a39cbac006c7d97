"""The number composer (train/numbers.py), judged on the rendered ink: labels and boxes, one writer per
number, the gaps of each spacing class, touching digits one piece of ink, the number inside the canvas;
and pendigits.render unchanged for one digit."""

import hashlib
import io
import random
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from handler.ink import INK_THRESHOLD
from train import numbers, pendigits

HELD_OUT = pendigits.held_out(pendigits.load())
PER_KIND = 16  # numbers per spacing and canvas


def ink(image: Image.Image) -> np.ndarray:
    """Where the handler would see ink: at least INK_THRESHOLD of black."""
    return (255 - np.asarray(image.convert("L"), dtype=float)) / 255 >= INK_THRESHOLD


def laid_out(spacing: str, seed: int = 0):
    """(canvas, drawings) of PER_KIND numbers per canvas, each of one held-out writer's digits."""
    rng = random.Random(seed)
    for canvas in numbers.CANVASES:
        for _ in range(PER_KIND):
            writer = rng.choice(sorted(pendigits.HELD_OUT_WRITERS))
            mine = [d for d in HELD_OUT if d.writer == writer]
            yield canvas, numbers.place(rng.sample(mine, rng.randint(2, 6)), rng, canvas, spacing)


def columns(drawing: pendigits.Drawing, canvas) -> np.ndarray:
    """The columns holding the drawing's ink, rendered alone."""
    return np.flatnonzero(ink(pendigits.render(drawing, canvas)).any(0))


def height(drawings) -> float:
    """H: the strokes' common height plus the brush (what numbers.py measures gaps in)."""
    _, _, top, bottom = pendigits.extent(drawings[0].strokes)
    return bottom - top + drawings[0].brush


def gaps(canvas, drawings) -> list[int]:
    """Blank columns between consecutive digits' rendered ink."""
    spans = [columns(d, canvas) for d in drawings]
    return [int(b.min() - a.max() - 1) for a, b in zip(spans, spans[1:], strict=False)]


def test_compose_labels_each_digit_with_its_ink_box():
    rng = random.Random(1)
    for canvas, spacing in [(c, s) for c in numbers.CANVASES for s in numbers.SPACINGS]:
        digits = rng.sample(HELD_OUT, rng.randint(2, 6))
        state = rng.getstate()
        png, label, boxes = numbers.compose(digits, rng, canvas, spacing)
        rng.setstate(state)
        drawings = numbers.place(digits, rng, canvas, spacing)
        assert label == "".join(str(d.label) for d in digits) and len(boxes) == len(label)
        assert Image.open(io.BytesIO(png)).size == canvas
        for (x, y, w, h), drawing in zip(boxes, drawings, strict=True):
            rows, cols = np.nonzero(ink(pendigits.render(drawing, canvas)))
            assert x <= cols.min() and cols.max() < x + w and y <= rows.min() and rows.max() < y + h
            assert cols.max() - cols.min() >= w - 3 and rows.max() - rows.min() >= h - 3
        assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)


def test_apart_digits_are_a_quarter_of_their_height_apart_or_more():
    for canvas, drawings in laid_out("apart"):
        assert min(gaps(canvas, drawings)) >= 0.25 * height(drawings)


def test_close_digits_are_apart_by_less_than_a_fifth_of_their_height():
    for canvas, drawings in laid_out("close"):
        found = gaps(canvas, drawings)
        assert min(found) >= 1 and max(found) < 0.2 * height(drawings), found


def test_touching_digits_are_one_piece_of_ink():
    for canvas, drawings in laid_out("touching"):
        for a, b in zip(drawings, drawings[1:], strict=False):
            both = pendigits.Drawing(-1, [*a.strokes, *b.strokes], a.brush)
            _, pieces = cv2.connectedComponents(
                ink(pendigits.render(both, canvas)).astype(np.uint8), connectivity=8
            )
            mine = [set(np.unique(pieces[ink(pendigits.render(d, canvas))])) for d in (a, b)]
            assert mine[0] & mine[1], f"{a.label} and {b.label} do not touch"


@pytest.mark.parametrize("spacing", numbers.SPACINGS)
def test_the_number_fits_the_canvas(spacing):
    for canvas, drawings in laid_out(spacing, seed=2):
        strokes = [s for d in drawings for s in d.strokes]
        found = ink(pendigits.render(pendigits.Drawing(-1, strokes, drawings[0].brush), canvas))
        margin = numbers.MARGIN - 1
        assert not found[:margin].any() and not found[-margin:].any()
        assert not found[:, :margin].any() and not found[:, -margin:].any()


def test_a_number_is_one_writers_digits_of_2_to_6_balanced_over_kinds():
    # each writer's digits relabelled with the writer's last figure: a number mixing writers shows it
    digits = [replace(d, label=d.writer % 10) for d in HELD_OUT]
    found = numbers.numbers(digits, 36, random.Random(3))
    assert all(len(set(n.label)) == 1 and n.label[0] == str(n.writer % 10) for n in found)
    assert {len(n.label) for n in found} <= set(range(2, 7))
    kinds = [(n.spacing, n.canvas) for n in found]
    assert all(kinds.count(k) == 6 for k in set(kinds)) and len(set(kinds)) == 6


def test_numbers_are_seeded():
    first, again = (numbers.numbers(HELD_OUT, 6, random.Random(4)) for _ in range(2))
    assert [n.png for n in first] == [n.png for n in again]


def test_one_digit_renders_as_before():
    """pendigits.render's pixels for one digit, pinned before it learnt wide canvases; a wide canvas
    holds the same pixels where the square one ends."""
    drawing = pendigits.layout(pendigits.load()[0], random.Random(5))
    digest = hashlib.sha256(pendigits.render(drawing).tobytes()).hexdigest()
    assert digest == "724a07d7d5b04c890c1d2ee6f49561df9f3765c16e4c5bdb436b7c8c499be677"
    alpha = pendigits.render(drawing, transparent=True, supersample=2).tobytes()
    assert (
        hashlib.sha256(alpha).hexdigest()
        == "2047f0611f800881aebc39e871721b813b6234f0da75163a5aaf3992ea9e3756"
    )
    wide = pendigits.render(drawing, (560, 280))
    assert wide.crop((0, 0, 280, 280)).tobytes() == pendigits.render(drawing).tobytes()
    assert not ink(wide.crop((280, 0, 560, 280))).any()


def test_the_digits_drawn_alone_make_up_the_number():
    """bench/read_accuracy.py's "alone" bound reads each digit drawn alone where it stands: apart, the
    digits' own drawings together are exactly the number's ink, and each is ink the number has."""
    for n in numbers.numbers(HELD_OUT, 8, random.Random(3), spacings=("apart",)):
        whole = ink(Image.open(io.BytesIO(n.png)))
        alone = [ink(Image.open(io.BytesIO(numbers.drawn_png([d], n.canvas)))) for d in n.drawings]
        assert len(alone) == len(n.label) and all(a.any() and not (a & ~whole).any() for a in alone)
        assert (np.logical_or.reduce(alone) == whole).all()
