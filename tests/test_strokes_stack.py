"""Strokes through the real stack (the web app in front of TorchServe and the handler; docs/api.md): sent
as JSON, as a form field or as a multipart field beside the image, a number is read as the handler reads
it in-process and its answer signed for the image; bad strokes are a 400 JSON that names the problem,
never a 5xx and never a reading without them; points off the canvas are clipped, not refused."""

import base64
import json
import random
import re

import pytest
import requests

from tests.drawings import data_url, read_in_process, same_reading
from tests.stack import TICKET_KEY
from train import numbers, pendigits
from web.tickets import Tickets, drawing_hash


@pytest.fixture(scope="module")
def touching():
    """Numbers of held-out writers written with their digits touching: (data URL, strokes, Number)."""
    found = numbers.numbers(pendigits.held_out(pendigits.load()), 6, random.Random(7), spacings=("touching",))
    rng = random.Random(8)
    return [(data_url(n.png).decode(), numbers.page_strokes(n.drawings, rng), n) for n in found]


def as_json(image: str, strokes) -> dict:
    return {
        "data": json.dumps({"image": image, "strokes": strokes}),
        "headers": {"Content-Type": "application/json"},
    }


def as_form(image: str, strokes) -> dict:
    text = strokes if isinstance(strokes, str) else json.dumps(strokes)
    return {"data": {"image": image, "strokes": text}}  # requests: application/x-www-form-urlencoded


def as_multipart(image: str, strokes) -> dict:
    text = strokes if isinstance(strokes, str) else json.dumps(strokes)
    png = base64.b64decode(image.split(",", 1)[1])  # the image as a file, the strokes as a text field
    return {"files": {"image": ("number.png", png, "image/png"), "strokes": (None, text)}}


SENDS = {"json": as_json, "form": as_form, "multipart": as_multipart}


def ask(url: str, send: dict) -> tuple[int, dict]:
    response = requests.post(url, timeout=30, **send)
    return response.status_code, response.json()


@pytest.mark.parametrize("how", list(SENDS))
def test_a_number_with_strokes_is_read_as_the_handler_reads_it_and_signed_for_its_image(
    stack, model_dir, touching, how
):
    bodies = [json.dumps({"image": image, "strokes": strokes}).encode() for image, strokes, _ in touching]
    alone = read_in_process(model_dir, bodies)
    tickets = Tickets(TICKET_KEY.encode())
    right = 0
    for (image, strokes, number), (status, want) in zip(touching, alone, strict=True):
        got_status, got = ask(stack.web_url + "/read", SENDS[how](image, strokes))
        assert got_status == status == 200, got
        same_reading(got, want)
        signed = "null" if got["number"] is None else got["number"]
        assert tickets.check(got["ticket"], drawing_hash(image), "1.0", signed)
        right += got["number"] == number.label
    assert right >= 4, f"{right} of {len(touching)} touching numbers read right with their strokes"


BAD = {
    "wrong shape": ([[1, 2, 3]], r"strokes\[0\]"),
    "NaN": ("NaN", "not finite"),
    "a string": ('"strokes"', "non-empty list"),
    "too many points": ([[[1, 2, t] for t in range(5000)]], "at most 4096"),
    "t decreasing": ([[[10, 10, 5], [20, 20, 4]]], "t decreases"),
}


@pytest.mark.parametrize("route", ["/read", "/predict"])
@pytest.mark.parametrize("how", list(SENDS))
@pytest.mark.parametrize("bad", list(BAD))
def test_bad_strokes_are_a_400_that_names_the_problem(stack, touching, route, how, bad):
    image, strokes, _ = touching[0]
    wrong, says = BAD[bad]
    if bad == "NaN":  # JSON has no NaN; Python's json writes it, and reads it back, as JavaScript does
        wrong = [[[*strokes[0][0][:2], float("nan")]]]
    send = SENDS[how](image, json.loads(wrong) if how == "json" and isinstance(wrong, str) else wrong)
    status, answer = ask(stack.web_url + route, send)
    assert status == 400, answer
    assert set(answer) == {"error"} and re.search(says, answer["error"]), answer


@pytest.mark.parametrize("how", ["form", "multipart"])
def test_strokes_that_are_not_json_are_a_400_from_the_web_app(stack, touching, how):
    image, _, _ = touching[0]
    status, answer = ask(stack.web_url + "/read", SENDS[how](image, "[[[1, 2, 3]"))
    assert status == 400 and "strokes is not JSON" in answer["error"], answer


def test_points_off_the_canvas_are_clipped_not_refused(stack, touching):
    """The pen leaves the canvas mid-stroke (the page keeps the pointer): the points past the edge are read
    as the edge's, the same answer as strokes the client clipped itself."""
    *before, last = touching[0][2].drawings
    x, y = last.strokes[-1][-1]
    off = pendigits.Drawing(last.label, [*last.strokes[:-1], [*last.strokes[-1], (x, 400.0)]], last.brush)
    image = data_url(numbers.drawn_png([*before, off], (560, 280))).decode()
    strokes = numbers.page_strokes([*before, off], random.Random(0))
    assert strokes[-1][-1][1] == 400.0
    clipped = [[[x, min(y, 280.0), t] for x, y, t in stroke] for stroke in strokes]
    for route in ("/read", "/predict"):  # a number to /predict: a digit, or "not a digit", never a 400
        (status, got), (want_status, want) = (
            ask(stack.web_url + route, as_json(image, s)) for s in (strokes, clipped)
        )
        assert status == want_status and status in (200, 422), got
        got.pop("ticket", None), want.pop("ticket", None)  # each answer's own
        assert got == want


def test_strokes_of_another_image_are_a_400(stack, touching):
    (image, _, _), (_, other, _) = touching[0], touching[1]
    status, answer = ask(stack.web_url + "/read", as_form(image, other))
    assert status == 400 and "uncovered" in answer["error"], answer
