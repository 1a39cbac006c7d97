"""POST /read through the real stack (the web app in front of TorchServe and the handler): a number is
read as the handler's own code reads it in-process, with the same model; its answer is signed; /read and
/predict sent at once travel in shared batches and each gets the answer it gets alone; the handler's
refusals (no digit, two lines, too many digits) and /predict's 4xx come back as the contract says."""

import random
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw

from handler.answers import PIECE_READER_FILE
from handler.errors import InputError
from handler.segment import read_candidates
from tests.drawings import BAD_INPUTS, data_url, drawing, png, read_in_process, same_reading
from tests.stack import TICKET_KEY, post
from train import numbers
from web.tickets import Tickets, drawing_hash

TICKETS = Tickets(TICKET_KEY.encode())


@pytest.fixture(scope="module")
def written():
    """(data URL, train.numbers.Number) for numbers of held-out writers (2-6 digits), every spacing on both
    canvases in turn."""
    return [(data_url(n.png), n) for n in numbers.held_out(12, seed=27)]


def test_a_number_is_read_as_the_handler_reads_it_in_process_and_its_answer_is_signed(
    stack, model_dir, written
):
    alone = read_in_process(model_dir, [body for body, _ in written])
    for (body, _), (status, want) in zip(written, alone, strict=True):
        got_status, got = post(stack.web_url + "/read", body)
        assert got_status == status, (got, want)
        if status != 200:
            assert got["reason"] == want["reason"] and "ticket" not in got
            continue
        same_reading(got, want)
        assert got["version"] == "1.0"
        signed = "null" if got["number"] is None else got["number"]
        assert TICKETS.check(got["ticket"], drawing_hash(body), "1.0", signed)


def test_the_served_model_reads_numbers_with_its_piece_reader(stack, model_dir, written):
    """The shipped model has a piece reader (train/piece_reader.py) and the stack's /read weighs every piece
    with it: its digits' probabilities are the in-process reading's with it (the test above), which
    differ from the reading without it."""
    assert (model_dir / PIECE_READER_FILE).exists(), "the served model has no piece reader"
    bodies = [body for body, _ in written]
    served = [post(stack.web_url + "/read", body) for body in bodies]
    without = read_in_process(model_dir, bodies, pieces=False)
    differ = 0
    for (status, got), (_, other) in zip(served, without, strict=True):
        if status == 200 and len(got["digits"]) == len(other["digits"]):
            differ += any(
                not np.allclose(g["probabilities"], w["probabilities"], atol=1e-3)
                for g, w in zip(got["digits"], other["digits"], strict=True)
            )
    assert differ >= len(bodies) // 2, (
        f"only {differ} of {len(bodies)} readings differ from the model's alone"
    )


def test_one_digit_through_read_is_what_predict_answers(stack):
    """The page can send everything to /read: a digit alone is read as /predict reads it (unless the
    segmentation cuts it, which the handler's own tests and bench/read_accuracy.py measure)."""
    same = 0
    for index in range(16):
        body = drawing(index)
        status, predicted = post(stack.web_url + "/predict", body)
        read_status, read = post(stack.web_url + "/read", body)
        assert read_status == 200, read
        if len(read["digits"]) != 1:
            continue
        same += 1
        (digit,) = read["digits"]
        if status == 200:
            assert (read["number"], digit["digit"]) == (str(predicted["digit"]), predicted["digit"])
        else:
            assert predicted["reason"] == "not_a_digit" and read["number"] is None and digit["digit"] is None
        assert digit["input_28x28"] == predicted["input_28x28"]
        assert np.allclose(digit["probabilities"], predicted["probabilities"], atol=1e-4)
    assert same >= 12, f"only {same} of 16 single digits were read as one digit"


def batch_sizes(web_url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(web_url + "/metrics", timeout=10).read().decode()
    count = float(re.search(r"^digit_batch_size_count (\S+)$", text, re.M)[1])
    return count, float(re.search(r"^digit_batch_size_sum (\S+)$", text, re.M)[1])


def test_numbers_and_digits_sent_at_once_share_batches_and_each_gets_its_own_answer(stack, written):
    digits = [drawing(index) for index in range(8)]
    alone = {("/predict", d): post(stack.web_url + "/predict", d) for d in digits}
    alone |= {("/read", body): post(stack.web_url + "/read", body) for body, _ in written}
    requests = [("/predict", d) for d in digits] + [("/read", body) for body, _ in written]
    random.Random(0).shuffle(requests)
    before = batch_sizes(stack.web_url)
    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda r: post(stack.web_url + r[0], r[1]), requests * 3))
    after = batch_sizes(stack.web_url)
    assert after[1] - before[1] == len(requests) * 3
    assert after[1] - before[1] > after[0] - before[0], "no two drawings travelled together"
    for request, (status, answer) in zip(requests * 3, replies, strict=True):
        want_status, want = alone[request]
        assert status == want_status, (request[0], answer, want)
        if request[0] == "/read" and status == 200:
            same_reading(answer, want)
        else:
            assert (answer.get("digit"), answer.get("reason")) == (want.get("digit"), want.get("reason"))


def read_pieces(web_url: str) -> float:
    text = urllib.request.urlopen(web_url + "/metrics", timeout=10).read().decode()
    return float(re.search(r"^digit_read_pieces_sum (\S+)$", text, re.M)[1])


def test_each_read_counts_the_pieces_the_handler_cut_it_into(stack, written):
    """What /read is charged by (web/ratelimit.py) comes from the handler through the batcher: every read's
    count in /metrics is read_candidates' for its drawing, 0 for one refused before the model."""
    blank = BAD_INPUTS["a blank canvas"][0]
    for body in [body for body, _ in written[:6]] + [blank]:
        try:
            want = len(read_candidates(body).images)
        except InputError:
            want = 0
        before = read_pieces(stack.web_url)
        post(stack.web_url + "/read", body)
        assert read_pieces(stack.web_url) - before == want


def canvas_png(draw) -> bytes:
    image = Image.new("L", (560, 280), 255)
    draw(ImageDraw.Draw(image))
    return png(image)


def two_lines(pen: ImageDraw.ImageDraw) -> None:
    for top in (20, 170):  # "11" above "11"
        for left in (200, 320):
            pen.line([(left, top), (left, top + 90)], fill=0, width=12)


def seventeen_strokes(pen: ImageDraw.ImageDraw) -> None:
    for i in range(17):
        pen.line([(14 + 31 * i, 60), (14 + 31 * i, 220)], fill=0, width=10)


@pytest.mark.parametrize(
    "body, reason",
    [
        (BAD_INPUTS["a blank canvas"][0], "no_digit"),
        (data_url(canvas_png(two_lines)), "two_lines"),
        (data_url(canvas_png(seventeen_strokes)), "too_many_digits"),
    ],
    ids=["blank", "two lines", "17 strokes"],
)
def test_nothing_read_is_a_422_with_its_reason_and_no_ticket(stack, body, reason):
    status, answer = post(stack.web_url + "/read", body)
    assert (status, answer.get("reason")) == (422, reason), answer
    assert isinstance(answer["error"], str) and "ticket" not in answer


@pytest.mark.parametrize("bad", [name for name in BAD_INPUTS if BAD_INPUTS[name][2] != 422])
def test_every_other_bad_body_gets_what_predict_gets(stack, bad):
    body, content_type, status = BAD_INPUTS[bad]
    predicted = post(stack.web_url + "/predict", body, content_type)
    read = post(stack.web_url + "/read", body, content_type)
    assert read[0] == predicted[0] == status, (read, predicted)
    assert read[1]["error"] == predicted[1]["error"]


def test_a_version_is_pinned_and_an_unknown_one_is_404(stack, written):
    body = written[0][0]
    assert post(stack.web_url + "/read?version=1.0", body)[1]["version"] == "1.0"
    status, answer = post(stack.web_url + "/read?version=9.9", body)
    assert status == 404 and "9.9" in answer["error"]


def iou(a, b) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_boxes_are_each_digits_ink_in_the_drawings_own_pixels(stack, written):
    """Digits written apart and read as that many pieces: each box is where the composer put that digit's
    ink (train/numbers.py), in the pixels of the image as sent (560x280 or 280x280)."""
    checked = 0
    for body, number in written:
        status, answer = post(stack.web_url + "/read", body)
        if number.spacing != "apart" or status != 200 or len(answer["digits"]) != len(number.label):
            continue
        for got, truth in zip(answer["digits"], number.boxes, strict=True):
            assert iou(got["box"], truth) >= 0.6, (number.canvas, got["box"], truth)
        checked += 1
    assert checked >= 2, f"only {checked} numbers written apart were cut into their digits"
