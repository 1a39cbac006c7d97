"""The page sends its strokes (web/static/js/drawing.js, requests.js), in a real Chromium on the real stack:
numbers of held-out writers written with the mouse, their digits touching, read digit by digit as the
strokes group them ("2026"; a 4 in two strokes beside a 7 whose bar is drawn after it); the strokes sent
are the ones drawn, in the sent image's pixels, with times; Undo asks again without the stroke undone."""

import base64
import random

import pytest

from tests.page import (
    CANVAS_BOX,
    PAGE_CANVAS,
    draw_stroke_with_mouse,
    read_requests,
    sent_drawing,
    settled,
)
from tests.stack import post
from train import numbers, pendigits

pytestmark = pytest.mark.browser


def readable(stack, labels: list, strokes: dict, count: int) -> list[list[pendigits.Drawing]]:
    """`count` numbers of these digits, each of one held-out writer, laid out touching on the page's canvas:
    digits with as many strokes as `strokes` says (label -> count), each of which /predict reads right
    drawn alone where it stands (the test is of the strokes, not of the quick test model's eye)."""
    rng = random.Random(2026)
    digits = pendigits.held_out(pendigits.load())
    found = []
    for writer in sorted({d.writer for d in digits}):
        mine = [d for d in digits if d.writer == writer]
        pools = [
            [d for d in mine if d.label == n and len(d.strokes) == strokes.get(n, len(d.strokes))]
            for n in labels
        ]
        if not all(pools):
            continue
        placed = numbers.place([rng.choice(pool) for pool in pools], rng, PAGE_CANVAS, "touching")
        alone = [numbers.drawn_png([d], PAGE_CANVAS) for d in placed]
        answers = [
            post(stack.web_url + "/predict", b"data:image/png;base64," + base64.b64encode(png))
            for png in alone
        ]
        if all(
            status == 200 and a["digit"] == d.label for (status, a), d in zip(answers, placed, strict=True)
        ):
            found.append(placed)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} writers whose {labels} /predict reads alone")


def draw(page, strokes: list) -> dict:
    """Draw these strokes (drawing space, 560x280) with the mouse, in this order; the /read answer."""
    box = page.evaluate(CANVAS_BOX)
    k = box["width"] / PAGE_CANVAS[0]
    with page.expect_response(lambda r: "/read" in r.url) as response:
        for stroke in strokes:
            draw_stroke_with_mouse(page, [(box["x"] + x * k, box["y"] + y * k) for x, y in stroke])
    settled(page)
    return response.value.json()


def test_2026_written_with_its_digits_touching_reads_2026_and_sends_its_strokes(stack, visit):
    for number in readable(stack, [2, 0, 2, 6], {}, 2):
        v = visit(stack)
        drawn = [stroke for digit in number for stroke in digit.strokes]
        answer = draw(v.page, drawn)
        assert answer["number"] == "2026", answer["number"]
        assert len(answer["digits"]) == 4 and settled(v.page)["text"] == "2026"
        image, sent = sent_drawing(read_requests(v)[-1])
        assert image.startswith("data:image/png;base64,") and len(sent) == len(drawn)
        for stroke, points in zip(drawn, sent, strict=True):
            # In the sent image's pixels: where the mouse went in drawing space, within the page's rounding.
            assert abs(points[0][0] - stroke[0][0]) <= 1 and abs(points[0][1] - stroke[0][1]) <= 1
            assert abs(points[-1][0] - stroke[-1][0]) <= 1 and abs(points[-1][1] - stroke[-1][1]) <= 1
            assert all(b[2] >= a[2] for a, b in zip(points, points[1:], strict=False))  # t never back
        starts = [points[0][2] for points in sent]
        assert sent[0][0][2] == 0 and starts == sorted(starts) and starts[-1] > starts[0]


def test_a_4_in_two_strokes_and_a_7_crossed_after_it_read_74(stack, visit):
    """The 7's bar is drawn last, after the whole 4: it is read with its 7."""
    for seven, four in readable(stack, [7, 4], {7: 2, 4: 2}, 2):
        v = visit(stack)
        answer = draw(v.page, [seven.strokes[0], *four.strokes, seven.strokes[1]])
        assert answer["number"] == "74", answer["number"]
        sent = sent_drawing(read_requests(v)[-1])[1]
        assert len(sent) == 4 and sent[3][0][2] > sent[2][-1][2]  # the bar came last


def test_undo_reads_again_without_the_stroke(stack, visit):
    """A 1 written after "206", apart: "2061"; Undo takes the 1 away and the page asks again, without it."""
    right, number = min(
        (max(x for d in n for s in d.strokes for x, _ in s) + n[0].brush, n)
        for n in readable(stack, [2, 0, 6], {}, 3)
    )
    assert right < 480, right
    v = visit(stack)
    drawn = [stroke for digit in number for stroke in digit.strokes]
    one = [(right + 50, 90.0), (right + 52, 200.0)]
    assert draw(v.page, [*drawn, one])["number"] == "2061"
    with v.page.expect_response(lambda r: "/read" in r.url) as response:
        v.page.click("#undo")
    assert response.value.json()["number"] == "206" and settled(v.page)["text"] == "206"
    assert len(sent_drawing(read_requests(v)[-1])[1]) == len(drawn)
