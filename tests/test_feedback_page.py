"""The page's feedback buttons in a real Chromium, on the real stack: after an answer, "Wrong? Tap the digit
you drew" (reached with the keyboard) and "Right" store the very drawing /predict got, in the stack's
real SQLite file."""

import base64
import json
import sqlite3

import pytest

from tests.page import draw_with_mouse, pen_drawings, predict_requests, settled
from train import nondigits

pytestmark = pytest.mark.browser

FEEDBACK_STATE = """() => ({
  offered: !document.getElementById("feedback").hidden,
  thanks: document.getElementById("thanks").textContent,
  labels: [...document.querySelectorAll("#digits button")].map(b => b.getAttribute("aria-label")),
  texts: [...document.querySelectorAll("#digits button")].map(b => b.textContent),
  group: document.getElementById("digits").getAttribute("role"),
  heading: document.getElementById(document.getElementById("digits").getAttribute("aria-labelledby")).textContent,
})"""


def rows(stack) -> list[dict]:
    with sqlite3.connect(stack.run_dir / "feedback.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in conn.execute(
                "SELECT id, label, predicted, version, png, ticket_id FROM feedback ORDER BY id"
            )
        ]


def sent_png(request) -> bytes:
    header, encoded = request.post_data.split(",", 1)
    assert header == "data:image/png;base64"
    return base64.b64decode(encoded)


def tab_to(page, element_id: str, most: int = 40) -> None:
    """Press Tab until the element has the focus, as a keyboard user would; fail if it never gets it."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with Tab")


def answer_a_drawing(v, drawing) -> tuple[dict, bytes]:
    """(The answer on screen, the PNG /predict was sent for it). On a busy machine a pause between
    strokes can outlast the page's debounce and send the half-drawn digit too: the answer that counts
    is the last one, once the page has settled."""
    v.page.click("#clear")
    draw_with_mouse(v.page, drawing)
    settled(v.page)
    last = predict_requests(v)[-1]
    return last.response().json(), sent_png(last)


def test_wrong_and_right_store_the_drawing_that_was_sent(stack, visit):
    v = visit(stack)
    before = len(rows(stack))
    wrong_drawing, right_drawing = pen_drawings(2, seed=14)

    answer, wrong_png = answer_a_drawing(v, wrong_drawing)
    state = v.page.evaluate(FEEDBACK_STATE)
    assert state["offered"] and state["thanks"] == ""
    assert state["texts"] == [str(d) for d in range(10)]
    assert state["labels"] == [f"I drew a {d}" for d in range(10)]
    assert state["group"] == "group" and state["heading"] == "Wrong? Tap the digit you drew"
    v.screenshot("feedback-offered")
    claimed = (answer["digit"] + 1) % 10  # a digit other than the answer: "wrong"
    v.page.locator("body").focus()
    tab_to(v.page, f"drew-{claimed}")
    with v.page.expect_response(lambda r: r.url.endswith("/api/feedback")) as stored_info:
        v.page.keyboard.press("Enter")
    assert stored_info.value.status == 201
    v.page.wait_for_function("() => document.getElementById('thanks').textContent.startsWith('Thanks')")
    assert v.page.locator("#feedback").is_hidden()  # one verdict per answer

    answer_right, right_png = answer_a_drawing(v, right_drawing)
    assert v.page.locator("#thanks").text_content() == ""  # a new answer, a new question
    assert v.page.get_attribute("#right", "aria-label") == f"Right: I drew a {answer_right['digit']}"
    with v.page.expect_response(lambda r: r.url.endswith("/api/feedback")) as stored_info:
        v.page.click("#right")
    assert stored_info.value.status == 201
    v.page.wait_for_function("() => document.getElementById('thanks').textContent.startsWith('Thanks')")

    sent = [r for r in v.requests if r.url.endswith("/api/feedback")]
    assert [json.loads(r.post_data)["label"] for r in sent] == [claimed, answer_right["digit"]]
    # Each feedback carries the ticket of its own answer (web/tickets.py), and is stored under it.
    assert [json.loads(r.post_data)["ticket"] for r in sent] == [answer["ticket"], answer_right["ticket"]]
    new = rows(stack)[before:]
    assert [(r["label"], r["predicted"], r["version"], r["ticket_id"]) for r in new] == [
        (claimed, answer["digit"], answer["version"], answer["ticket"].split(".")[1]),
        (
            answer_right["digit"],
            answer_right["digit"],
            answer_right["version"],
            answer_right["ticket"].split(".")[1],
        ),
    ]
    # Exactly the bytes /predict was sent for each answer.
    assert [r["png"] for r in new] == [wrong_png, right_png]


def test_no_feedback_is_offered_without_an_answer(stack, visit):
    v = visit(stack)
    assert v.page.locator("#feedback").is_hidden()
    v.page.mouse.click(5, 5)  # nowhere near the canvas
    answer_a_drawing(v, pen_drawings(1, seed=3)[0])
    assert v.page.locator("#feedback").is_visible()
    v.page.click("#clear")
    assert v.page.locator("#feedback").is_hidden()  # cleared: nothing left to judge


def test_not_a_digit_feedback_both_ways_is_stored(stack, visit):
    """On a drawing answered "not a digit": "Right, not a digit" stores label 10, "It is a digit: 7" stores 7
    (both with predicted 10); on a digit's answer, "Not a digit" stores label 10."""
    v = visit(stack)
    before = len(rows(stack))
    clicks = [("#right", nondigits.letter("X", seed=1)), ("#drew-7", nondigits.letter("X", seed=1))]
    for button, drawing in clicks:
        answer, _ = answer_a_drawing(v, drawing)
        assert answer.get("reason") == "not_a_digit", answer
        with v.page.expect_response(lambda r: r.url.endswith("/api/feedback")) as stored_info:
            v.page.click(button)
        assert stored_info.value.status == 201
        v.page.wait_for_function("() => document.getElementById('thanks').textContent.startsWith('Thanks')")
    assert v.page.locator("#thanks").text_content() == "Thanks! Noted: you drew a 7."
    answer, _ = answer_a_drawing(v, pen_drawings(1, seed=3)[0])
    assert "digit" in answer and "reason" not in answer, answer
    with v.page.expect_response(lambda r: r.url.endswith("/api/feedback")) as stored_info:
        v.page.click("#not-digit")
    assert stored_info.value.status == 201
    v.page.wait_for_function("() => document.getElementById('thanks').textContent.startsWith('Thanks')")
    assert v.page.locator("#thanks").text_content() == "Thanks! Noted: not a digit."
    new = rows(stack)[before:]
    assert [(r["label"], r["predicted"]) for r in new] == [(10, 10), (7, 10), (10, answer["digit"])]
