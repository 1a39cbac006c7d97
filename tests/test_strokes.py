"""A number read with the pen's strokes (handler/pen.py, handler/strokes.py, handler/segment.py;
docs/reading.md): strokes checked as the API says (a 400 that names the problem, points outside the image
clipped), strokes that are not the image's refused, one digit read as /predict reads it, the order strokes
came in changing nothing, and touching digits read from their own ink far better than the picture alone
lets the cutter read them."""

import json
import math
import random

import numpy as np
import pytest

from handler import strokes
from handler.answers import read_number
from handler.decode import NO_STROKES, payload_to_drawing
from handler.errors import InputError
from handler.mnist_form import preprocess
from handler.pen import MAX_POINTS, MAX_STROKES, checked, digit_image
from handler.segment import read_candidates
from tests.drawings import data_url
from tests.handler_context import Context, handle
from train import numbers, pendigits


def body(drawings: list, canvas=(560, 280), strokes=...) -> bytes:
    """JSON {"image", "strokes"} of these pendigits.Drawing (canvas pixels) as the page sends them; or with
    `strokes` as given."""
    image = data_url(numbers.drawn_png(drawings, canvas)).decode()
    sent = numbers.page_strokes(drawings, random.Random(0)) if strokes is ... else strokes
    return json.dumps({"image": image, "strokes": sent}).encode()


def two_digits(labels=(4, 2), spacing="touching", writer_at=0) -> list:
    digits = pendigits.held_out(pendigits.load())
    writer = sorted({d.writer for d in digits})[writer_at]
    chosen = [next(d for d in digits if d.writer == writer and d.label == n) for n in labels]
    return numbers.place(chosen, random.Random(1), (560, 280), spacing)


LINE = [[10.0, 10.0, 0.0], [20.0, 20.0, 5.0]]
BAD = {
    "a string": ("strokes", "non-empty list of strokes"),
    "null": (None, "non-empty list of strokes"),
    "no strokes": ([], "non-empty list of strokes"),
    "an object": ({"x": 1}, "non-empty list of strokes"),
    "an empty stroke": ([LINE, []], r"strokes\[1\] must be a non-empty list"),
    "two numbers a point": ([[[1, 2]]], r"strokes\[0\]\[0\] must be \[x, y, t\]"),
    "a string in a point": ([LINE, [[1, 2, 3], [1, "2", 3]]], r"strokes\[1\]\[1\] must be \[x, y, t\]"),
    "a boolean": ([[[1, 2, True]]], r"strokes\[0\]\[0\] must be \[x, y, t\]"),
    "NaN": ([LINE, [[1, math.nan, 3]]], r"strokes\[1\] holds a number that is not finite"),
    "Infinity": ([[[math.inf, 2, 3]]], "not finite"),
    "an integer past a float": ([[[10**400, 2, 3]]], "not finite"),
    "t going back": ([[[1, 2, 30], [2, 3, 20]]], r"strokes\[0\]: t decreases"),
    "too many strokes": ([LINE] * (MAX_STROKES + 1), f"at most {MAX_STROKES}"),
    "too many points": ([[[1, 2, t] for t in range(MAX_POINTS + 1)]], f"at most {MAX_POINTS}"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_strokes_are_a_400_that_says_what_is_wrong(name):
    strokes, says = BAD[name]
    drawings = two_digits()
    sent = body(drawings, strokes=strokes).replace(
        b"Infinity", b"1e999"
    )  # json.dumps writes what JSON has not
    for read in (read_candidates, digit_image):  # /read and /predict
        with pytest.raises(InputError, match=says) as error:
            read(sent)
        assert error.value.status == 400


def test_json_numbers_too_long_to_read_are_a_400_not_a_fault():
    with pytest.raises(InputError, match="too long"):
        payload_to_drawing('{"image": "x", "strokes": [[[1' + "0" * 5000 + ", 2, 3]]]}")


def test_without_strokes_a_drawing_is_read_as_ever():
    drawings = two_digits()
    png = numbers.drawn_png(drawings, (560, 280))
    assert payload_to_drawing(data_url(png))[1] is NO_STROKES
    assert payload_to_drawing(json.dumps({"image": data_url(png).decode()}))[1] is NO_STROKES
    plain = read_candidates(json.dumps({"image": data_url(png).decode()}))
    assert np.array_equal(plain.images, read_candidates(png).images)


def test_points_outside_the_image_are_clipped_to_it():
    drawings = two_digits()
    strokes = numbers.page_strokes(drawings, random.Random(0))
    clipped = checked([[*strokes[0], [900.0, -50.0, strokes[0][-1][2] + 10]]], 560, 280)[0]
    assert clipped[-1].tolist() == [560.0, 0.0, strokes[0][-1][2] + 10]
    wandering = [[[-30.0, 140.0, -5.0], *strokes[0], [700.0, 300.0, 1e6]], *strokes[1:]]  # off the canvas
    assert read_candidates(body(drawings, strokes=wandering)).images.shape[0] > 0


@pytest.mark.parametrize("how", ["moved", "in CSS pixels at half the size"])
def test_strokes_of_other_pixels_than_the_images_are_refused(how):
    drawings = two_digits()
    strokes = numbers.page_strokes(drawings, random.Random(0))
    change = (lambda x, y: (x + 120, y)) if how == "moved" else (lambda x, y: (x / 2, y / 2))
    elsewhere = [[[*change(x, y), t] for x, y, t in stroke] for stroke in strokes]
    for read in (read_candidates, digit_image):
        with pytest.raises(InputError, match="uncovered"):
            read(body(drawings, strokes=elsewhere))


def test_one_digit_with_strokes_is_what_predict_sees():
    four = two_digits()[:1]  # a 4 in two strokes
    assert len(four[0].strokes) == 2
    sent, png = body(four), numbers.drawn_png(four, (560, 280))
    candidates = read_candidates(sent)
    whole = candidates.spans.index((0, 0, candidates.nodes[0] - 1))
    assert np.array_equal(candidates.images[whole], preprocess(png))
    assert np.array_equal(digit_image(sent), preprocess(png))


def test_the_order_strokes_came_in_changes_nothing():
    """A 7's bar drawn after the next digit: its strokes are ordered by where they are, not when."""
    seven, two = two_digits((7, 2))
    assert len(seven.strokes) == 2
    in_order = numbers.page_strokes([seven, two], random.Random(0))
    bar_last = [in_order[0], *in_order[2:], in_order[1]]
    bar_last[-1] = [[x, y, t + 5000] for x, y, t in bar_last[-1]]
    a, b = (
        read_candidates(body([seven, two], strokes=in_order)),
        read_candidates(body([seven, two], strokes=bar_last)),
    )
    assert a.spans == b.spans and np.array_equal(a.images, b.images)
    # Among the candidates: the 7 whole (both its strokes), and the 2 alone.
    sevens = [box for box, (_, i, j) in zip(a.boxes, a.spans, strict=True) if (i, j) == (0, 2)]
    assert sevens and abs(sevens[0][0] - numbers.box(seven)[0]) <= 4


def test_a_group_plainly_of_one_digit_is_decided_as_its_units_would(monkeypatch):
    """A narrow group whose strokes plainly lie in each other's columns is read whole with no stroke's ink
    built (handler/strokes.py _plainly_one, to spare /read's CPU): building every unit instead gives the
    same candidates on numbers of held-out writers of every spacing, and the shortcut serves most groups of
    several strokes."""
    found = numbers.numbers(pendigits.held_out(pendigits.load()), 60, random.Random(5))
    bodies = [body(n.drawings, n.canvas) for n in found]
    decided, plainly_one = [], strokes._plainly_one
    monkeypatch.setattr(strokes, "_plainly_one", lambda *a: decided.append(plainly_one(*a)) or decided[-1])
    quick = [read_candidates(sent) for sent in bodies]
    monkeypatch.setattr(strokes, "_plainly_one", lambda *a: False)
    for a, b in zip(quick, map(read_candidates, bodies), strict=True):
        assert a.spans == b.spans and a.boxes == b.boxes and np.array_equal(a.images, b.images)
    assert sum(decided) >= 0.5 * len(decided) > 10, decided


def one_stroke_drawings(width_over_height, count=1) -> list:
    """Held-out digits drawn in one stroke, placed alone on the page's canvas, whose ink is this wide
    (a range, of its height)."""
    low, high = width_over_height
    found = []
    for digit in pendigits.held_out(pendigits.load()):
        if len(digit.strokes) == 1:
            [drawing] = numbers.place([digit], random.Random(0), (560, 280), "apart")
            _, _, w, h = numbers.box(drawing)
            if low <= w / h <= high:
                found.append(drawing)
                if len(found) == count:
                    return found
    raise AssertionError(f"no {count} held-out digits of one stroke {low}-{high} of their height wide")


def test_a_group_of_one_stroke_is_one_digit_unless_wide_enough_for_two():
    """A digit drawn in one stroke is one candidate, its whole, /predict's image (the picture alone cuts a
    group wider than 0.9 of its height into parts for the model to turn down); two digits written in one
    stroke, wider than WIDE_STROKE of their height, are cut as the picture is."""
    for drawing in one_stroke_drawings((1.0, 1.2), count=5):
        picture, sent = data_url(numbers.drawn_png([drawing], (560, 280))), body([drawing])
        assert len(read_candidates(picture).images) > 1
        candidates = read_candidates(sent)
        assert len(candidates.images) == 1 and candidates.alone == 0
        assert np.array_equal(candidates.images[0], digit_image(sent))
    a, b = one_stroke_drawings((0.5, 0.9), count=2)
    shift = numbers.box(a)[0] + numbers.box(a)[2] + 10 - numbers.box(b)[0]
    moved = [[(x + shift, y) for x, y in stroke] for stroke in b.strokes]
    joined = pendigits.Drawing(-1, [list(a.strokes[0]) + moved[0]], a.brush)  # the pen never lifts
    _, _, w, h = numbers.box(joined)
    assert w > strokes.WIDE_STROKE * h
    assert len(read_candidates(body([joined])).images) > 1


@pytest.fixture(scope="module")
def probabilities_of(model_dir):
    import torch

    return numbers.softmax_of(torch.jit.load(str(model_dir / "model.pt"), map_location="cpu").eval())


def test_touching_numbers_read_with_strokes_far_better_than_as_a_picture(probabilities_of):
    """Numbers of held-out writers written with their digits touching (the shipped model, in-process): the
    strokes read most of them, the picture alone under half (issue 42: 81.5% against 47.5%), with a
    fraction of the candidates, and each digit's box is its own ink's."""
    found = numbers.numbers(
        pendigits.held_out(pendigits.load()), 40, random.Random(42), spacings=("touching",)
    )
    exact, pieces, boxes = {"picture": 0, "strokes": 0}, {"picture": 0, "strokes": 0}, []
    for n in found:
        for way, sent in (("picture", data_url(n.png)), ("strokes", body(n.drawings, n.canvas))):
            answer = read_number(sent, probabilities_of)
            exact[way] += answer["number"] == n.label
            pieces[way] += len(read_candidates(sent).images)
            if way == "strokes" and answer["number"] == n.label:
                boxes += [iou(d["box"], truth) for d, truth in zip(answer["digits"], n.boxes, strict=True)]
    assert exact["strokes"] >= 0.75 * len(found), exact
    assert exact["strokes"] - exact["picture"] >= 0.2 * len(found), exact
    assert pieces["strokes"] * 4 < pieces["picture"], pieces
    assert np.median(boxes) >= 0.85 and min(boxes) >= 0.4, sorted(boxes)[:5]


def iou(a, b) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_handler_answers_bad_strokes_400_beside_good_drawings(model_dir):
    from handler.mnist_handler import MnistHandler

    context = Context(model_dir)
    handler = MnistHandler()
    handler.initialize(context)
    good, bad = body(two_digits()), body(two_digits(), strokes=[[[1, 2, "3"]]])
    [parts] = handle(handler, context, [{"number-0": good, "number-1": bad, "drawing-2": bad}])
    assert [p["status"] for p in parts] == [200, 400, 400]
    assert "strokes[0][0]" in parts[1]["answer"]["error"] and parts[1]["pieces"] == 0
    assert handle(handler, context, [{"body": bad}])[0]["error"].startswith("strokes[0][0]")
    assert context.statuses[0][0] == 400
