"""Reading a whole number (handler/segment.py read_candidates, handler/answers.py choose / read_answer;
docs/reading.md): pieces of ink grouped into digits, cut where digits touch, the cuts chosen by the
model's scores; and the handler answering number-N parts beside drawing-N ones."""

import math
import random

import numpy as np
import pytest

from handler.answers import EXTRA_PIECE, choose, read_answer, read_digits, with_pieces
from handler.decode import decode
from handler.errors import NoDigitError, TooManyDigitsError, TwoLinesError
from handler.groups import digit_groups
from handler.ink import ink_map
from handler.mnist_form import preprocess
from handler.segment import (
    CUT_STEP,
    MAX_CANDIDATES,
    MAX_DIGITS,
    MIN_PART,
    Candidates,
    _cuts,
    _parts,
    read_candidates,
)
from tests.handler_context import Context, handle
from train import numbers, pendigits

STROKES = {  # digits drawn as a person draws them, in 0-100 units, y down
    "5": [[(70, 10), (30, 10), (25, 45)], [(25, 45), (60, 40), (70, 65), (55, 90), (20, 85)]],
    "flag5": [[(70, 10), (35, 10)], [(30, 14), (25, 45), (60, 40), (70, 65), (55, 90), (20, 85)]],
    "1": [[(50, 5), (50, 95)]],
    "4": [[(60, 5), (15, 65), (80, 65)], [(60, 30), (60, 95)]],  # two strokes, as a 4 often is
}


def drawing(parts: list[tuple[str, float, float]], canvas=(560, 280), size=120.0) -> bytes:
    """PNG of STROKES[name] placed at (x, y) (top left, canvas pixels), `size` px tall, brush 12 px."""
    strokes = [
        [(x + px * size / 100, y + py * size / 100) for px, py in stroke]
        for name, x, y in parts
        for stroke in STROKES[name]
    ]
    return pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, strokes, 12.0), canvas))


def groups(png: bytes) -> list:
    return digit_groups(ink_map(decode(png), side=min))


def test_strokes_of_one_digit_are_one_group_and_digits_apart_are_not():
    assert len(groups(drawing([("flag5", 40, 60)]))) == 1  # the flag apart from the body
    assert len(groups(drawing([("4", 40, 60)]))) == 1  # two strokes
    assert len(groups(drawing([("4", 40, 60), ("1", 240, 60), ("5", 380, 60)]))) == 3


@pytest.mark.parametrize("canvas", [(280, 280), (560, 280)])
def test_one_digit_is_what_predict_sees(canvas):
    """On the wide canvas too, where a number is worked at twice /predict's resolution."""
    png = drawing([("4", 100, 60)], canvas=canvas)
    candidates = read_candidates(png)
    assert candidates.nodes == [2] and len(candidates.images) == 1
    assert np.array_equal(candidates.images[0], preprocess(png))


def test_boxes_are_in_the_drawings_pixels_left_to_right():
    candidates = read_candidates(drawing([("1", 60, 60), ("4", 300, 60)]))
    assert candidates.spans == [(0, 0, 1), (1, 0, 1)]
    (x1, y1, w1, h1), (x4, y4, w4, h4) = candidates.boxes
    assert 100 <= x1 + w1 / 2 <= 130 and 300 <= x4 and x4 + w4 <= 410  # the 1's stroke is at x = 120
    # The stroke runs from y = 66 to 174, with half the 12 px brush around: 60 to 180 (2 px a work pixel).
    assert abs(y1 - 60) <= 2 and abs(h1 - 120) <= 4


def test_two_lines_and_too_many_pieces_and_nothing_are_refused():
    with pytest.raises(TwoLinesError):
        read_candidates(drawing([("4", 100, 5), ("5", 100, 150)], size=110))
    many = drawing([("1", 10 + 30 * i, 60) for i in range(MAX_DIGITS + 1)], size=60)
    with pytest.raises(TooManyDigitsError):
        read_candidates(many)
    blank = pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, [], 12.0), (560, 280)))
    with pytest.raises(NoDigitError):
        read_candidates(blank)


def test_work_is_bounded_one_long_stroke_is_no_number():
    """A zigzag in one stroke across a strip: no number, refused before it costs hundreds of candidates."""
    zigzag = [[(x, 40 if (x // 30) % 2 else 220) for x in range(10, 2490, 30)]]  # within MAX_PIXELS
    strip = pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, zigzag, 8.0), (2496, 256)))
    with pytest.raises(TooManyDigitsError):
        read_candidates(strip)
    shorter = [[(x, 40 if (x // 30) % 2 else 220) for x in range(10, 600, 30)]]  # ~2.5 heights wide
    candidates = read_candidates(
        pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, shorter, 8.0), (620, 256)))
    )
    assert 1 < len(candidates.images) <= MAX_CANDIDATES


def test_cuts_are_a_grid_spread_wider_to_keep_within_the_budget():
    height, width = 100, 400
    mask = np.ones((height, width), bool)
    dense = _cuts(mask, math.inf)
    assert dense[0] >= MIN_PART * height and dense[-1] <= width - MIN_PART * height
    assert set(np.diff(dense)) <= {int(CUT_STEP * height), int(CUT_STEP * height) + 1}
    few = _cuts(mask, 50)
    assert len(_parts([0, *few, width], height)) <= 50 < len(_parts([0, *dense, width], height))
    assert _cuts(mask, 0.5) == []  # a budget no cut fits: none, and no endless widening


def test_six_touching_digits_get_their_cuts_within_the_drawing_bound():
    six = [d for d in pendigits.trainable(pendigits.load())[:60] if d.label != 1][:6]
    touching = numbers.compose(six, random.Random(1), (560, 280), "touching")[0]
    candidates = read_candidates(touching)
    assert len(candidates.nodes) < 6, "touching digits come as fewer pieces of ink than digits"
    assert sum(candidates.nodes) > 20, "wide groups get many cuts"
    assert len(candidates.images) <= MAX_CANDIDATES


def test_choose_cuts_where_the_whole_is_not_a_digit_and_keeps_a_confident_whole():
    zeros = [d for d in pendigits.trainable(pendigits.load()) if d.label == 0][:2]  # wide: "00"
    touching = numbers.compose(zeros, random.Random(0), (560, 280), "touching")[0]
    candidates = read_candidates(touching)
    assert candidates.nodes[0] > 2, "a wide group gets cuts to choose from"
    whole = next(i for i, (_, a, b) in enumerate(candidates.spans) if (a, b) == (0, candidates.nodes[0] - 1))

    def scores(whole_row):
        p = np.full((len(candidates.spans), 11), 0.01)
        p[:, 3] = 0.9  # every piece reads as a confident 3
        p[whole] = whole_row
        return p

    not_a_digit = np.array([0.01] * 10 + [0.9])
    digits = choose(candidates, scores(not_a_digit))
    assert len(digits) >= 2 and whole not in [d.index for d in digits]
    confident = np.array([0.0] * 7 + [1.0, 0.0, 0.0, 0.0])
    assert [d.index for d in choose(candidates, scores(confident))] == [whole]


def test_a_narrow_drawing_of_two_groups_is_also_one_digit_and_the_surer_reading_wins():
    """A digit whose strokes stand apart (two groups of ink) narrow enough for one digit: the whole of it,
    as /predict sees it, is a candidate beside the groups; a wide drawing has no such candidate."""
    narrow = drawing([("1", 100, 60), ("1", 150, 60)])  # two strokes, ~0.5 as wide as tall
    candidates = read_candidates(narrow)
    assert len(candidates.nodes) == 2 and candidates.one is not None
    assert np.array_equal(candidates.images[candidates.one], preprocess(narrow))
    assert read_candidates(drawing([("1", 60, 60), ("4", 300, 60)])).one is None

    def reading(groups_sure: float, one_sure: float) -> list:
        p = np.full((len(candidates.spans), 11), 0.0)
        p[:, 1] = groups_sure
        p[:, 10] = 1 - groups_sure
        p[candidates.one] = [0.0] * 4 + [one_sure] + [0.0] * 5 + [1 - one_sure]
        return [d.index for d in choose(candidates, p)]

    assert reading(0.999, 0.6) != [candidates.one]  # two sure 1s beat an unsure 4
    assert reading(0.6, 0.99) == [candidates.one]  # two unsure pieces lose to a sure 4


@pytest.mark.parametrize("width, cut", [(100, False), (200, True)])
def test_a_group_narrow_for_one_digit_is_cut_only_when_the_parts_are_much_surer(width, cut):
    """EXTRA_PIECE: parts read at 0.95 each beat a whole at 0.8 by the model alone; in a group no wider
    than it is tall, the second piece's cost leaves the whole."""
    candidates = Candidates(
        np.zeros((3, 28, 28), np.float32),
        [[0, 0, width, 100], [0, 0, width // 2, 100], [width // 2, 0, width // 2, 100]],
        [(0, 0, 2), (0, 0, 1), (0, 1, 2)],
        [3],
    )
    p = np.zeros((3, 11))
    p[0, 8], p[0, 10] = 0.8, 0.2
    p[1:, 3], p[1:, 10] = 0.95, 0.05
    assert 2 * math.log(0.95) + EXTRA_PIECE < math.log(0.8) < 2 * math.log(0.95)
    assert [d.index for d in choose(candidates, p)] == ([1, 2] if cut else [0])


def test_a_piece_that_is_not_a_digit_makes_the_number_null():
    candidates = read_candidates(drawing([("1", 60, 60), ("4", 300, 60)]))
    p = np.array([[0.0, 0.9] + [0.01] * 9, [0.02] * 10 + [0.8]])
    answer = read_answer(candidates, choose(candidates, p))
    assert answer["number"] is None
    assert [d["digit"] for d in answer["digits"]] == [1, None]
    assert answer["digits"][1]["probabilities"] == pytest.approx([0.1] * 10)


def test_the_piece_reader_cuts_where_it_says_the_whole_is_not_one_digit_and_reads_each_piece():
    """with_pieces (PIECE_WEIGHT): the digit reader reads the whole of a touching "00" and every piece of
    it alike (3 at 0.5, 0 at 0.4, as a reader never shown pieces may); the piece reader says the whole is
    not one digit and every piece a 0: a cut in two wins, and each piece reads 0. "Not a digit" stays the
    digit reader's."""
    zeros = [d for d in pendigits.trainable(pendigits.load()) if d.label == 0][:2]
    candidates = read_candidates(numbers.compose(zeros, random.Random(0), (560, 280), "touching")[0])
    whole = next(i for i, (_, a, b) in enumerate(candidates.spans) if (a, b) == (0, candidates.nodes[0] - 1))
    p = np.full((len(candidates.spans), 11), 0.0125)
    p[:, 3], p[:, 0] = 0.5, 0.4
    assert [d.index for d in choose(candidates, p)] == [whole]  # the reader alone keeps the whole
    q = np.full((len(candidates.spans), 11), 0.001)
    q[:, 0] = 0.99
    q[whole] = [0.001] * 10 + [0.99]
    combined = with_pieces(p, q)
    assert np.array_equal(combined[:, 10], p[:, 10]) and combined.dtype == np.float64
    digits = read_digits(candidates, p, q)
    assert len(digits) == 2 and whole not in [d.index for d in digits]
    assert read_answer(candidates, digits)["number"] == "00"


def test_a_drawing_read_whole_is_read_by_the_digit_reader_alone_as_predict_reads_it():
    """The candidate that is /predict's image (Candidates.alone) keeps the digit reader's probabilities
    when it is the reading, whatever the piece reader says of its digit: /read of one digit is /predict's."""
    body = drawing([("5", 200, 60)])
    candidates = read_candidates(body)
    assert candidates.alone is not None
    assert np.array_equal(candidates.images[candidates.alone], preprocess(body))
    p = np.full((len(candidates.spans), 11), 0.0)
    p[:, 5] = 1.0
    q = np.full((len(candidates.spans), 11), 0.01)
    q[:, 6] = 0.9  # the piece reader would call it a 6
    (digit,) = read_digits(candidates, p, q)
    assert digit.index == candidates.alone and np.array_equal(digit.probabilities, p[candidates.alone])
    assert read_answer(candidates, [digit])["number"] == "5"


@pytest.fixture(scope="module")
def handler_and_context(model_dir):
    from handler.mnist_handler import MnistHandler

    context = Context(model_dir)
    context.manifest["model"]["modelVersion"] = "3.1"
    handler = MnistHandler()
    handler.initialize(context)
    return handler, context


def test_the_handler_reads_a_number_and_answers_each_part_on_its_own(handler_and_context):
    """Digits the model reads right alone, written apart as a number, read as that number; beside it in
    the same request a one-digit drawing and a blank number, each answered as alone."""
    handler, context = handler_and_context
    rng = random.Random(3)
    held_out = pendigits.held_out(pendigits.load())[:40]
    alone = [pendigits.png_bytes(pendigits.render(pendigits.layout(d, rng))) for d in held_out]
    answers = handle(handler, context, [{"body": png} for png in alone])
    right = [d for d, a in zip(held_out, answers, strict=True) if a.get("digit") == d.label]
    chosen = [d for d in right if d.writer == right[0].writer][:4]
    assert len(chosen) >= 3
    png, label, boxes = numbers.compose(chosen, rng, (560, 280), "apart")
    blank = pendigits.png_bytes(pendigits.render(pendigits.Drawing(-1, [], 12.0), (560, 280)))
    [parts] = handle(handler, context, [{"number-0": png, "drawing-1": alone[0], "number-2": blank}])
    assert [p["status"] for p in parts] == [200, 200, 422]
    number = parts[0]["answer"]
    assert number["number"] == label and number["version"] == "3.1"
    for digit, (x, y, w, h) in zip(number["digits"], boxes, strict=True):
        bx, by, bw, bh = digit["box"]
        assert abs(bx + bw / 2 - (x + w / 2)) < w / 2 and abs(by + bh / 2 - (y + h / 2)) < h / 2
        assert sum(digit["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    # As alone: the same answer, the probabilities within float rounding (a batch of another size may
    # take another convolution kernel: they differed in the 7th digit with the head's model).
    as_part, as_alone = dict(parts[1]["answer"]), dict(answers[0])
    assert as_part.pop("probabilities") == pytest.approx(as_alone.pop("probabilities"), rel=1e-4, abs=1e-7)
    assert as_part == as_alone
    assert parts[2]["answer"]["reason"] == "no_digit"
