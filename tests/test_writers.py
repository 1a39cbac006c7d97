"""Writers (docs/writers.md, issue 43) through the real stack: a writer's correction changes that writer's
next such drawing and no one else's; the memory is the database's (a second web app sees it, it outlives a
restart, a new model version uses it); DELETE /api/writer empties it; a malformed X-Writer is a 400."""

import json
import random
import secrets
import urllib.error
import urllib.request

import pytest

from tests.stack import Stack, archive, free_port_base, make, post
from train import pendigits
from train.canvases import data_url

A, B = secrets.token_urlsafe(16), secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def stack(model_dir, tmp_path_factory):
    """A stack of the module's own: its web app restarts and it registers a version."""
    store = tmp_path_factory.mktemp("model_store")
    archive(model_dir, store, "1.0")
    running = Stack(tmp_path_factory.mktemp("run"), store).start()
    yield running
    running.stop()


def ask(url: str, image: bytes, writer: str | None = None, path: str = "/predict"):
    return post(url + path, image, "text/plain", {"X-Writer": writer} if writer else None)


def delete_writer(url: str, writer: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/api/writer", method="DELETE", headers={"X-Writer": writer})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def ones(stack) -> list[tuple[bytes, dict]]:
    """Writer 28's 1s (long-flagged: the model's 7s) as the page draws them, least sure first, with the
    answer each gets without a writer."""
    digits = [d for d in pendigits.held_out(pendigits.load()) if d.writer == 28 and d.label == 1]
    rng = random.Random(0)
    drawn = [data_url(pendigits.render(pendigits.layout(d, rng))) for d in digits]
    answered = [(image, ask(stack.web_url, image)[1]) for image in drawn]
    return sorted(answered, key=lambda pair: pair[1]["probabilities"][1])


def correct(url: str, image: bytes, answer: dict, label: int, writer: str) -> None:
    body = {"image": image.decode(), "label": label, "predicted": answer["digit"]}
    body |= {"version": answer["version"], "ticket": answer["ticket"]}
    request = urllib.request.Request(
        url + "/api/feedback",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Writer": writer},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


@pytest.fixture(scope="module")
def corrected(stack, ones) -> tuple[bytes, int]:
    """Writer A corrected the least sure 1: to 1 when the model misread it (a real correction), else to
    its second guess (a deliberate wrong label: it must change A's answers alone)."""
    image, _ = ones[0]
    status, answer = ask(stack.web_url, image, A)
    assert status == 200 and "adapted" not in answer  # no memory yet: the model's own answer
    ranked = sorted(range(10), key=lambda d: -answer["probabilities"][d])
    label = 1 if answer["digit"] != 1 else ranked[1]
    correct(stack.web_url, image, answer, label, A)
    return image, label


def test_a_correction_changes_that_writers_answer_and_no_one_elses(stack, ones, corrected):
    image, label = corrected
    status, mine = ask(stack.web_url, image, A)
    assert status == 200 and mine["digit"] == label and mine["adapted"] is True
    plain = ask(stack.web_url, image)[1]
    for other in (B, None):
        theirs = ask(stack.web_url, image, other)[1]
        assert "adapted" not in theirs and theirs["probabilities"] == plain["probabilities"]
    # /read of the same drawing, as the page asks: its digit adapted too
    status, read = ask(stack.web_url, image, A, "/read")
    assert status == 200 and read["number"] == str(label) and read["digits"][0]["adapted"] is True
    # The writer's other 1s: none read worse, and none of another writer's answers changed
    for other_image, alone in ones[1:6]:
        again = ask(stack.web_url, other_image, A)[1]
        assert again["probabilities"][label] >= alone["probabilities"][label] - 1e-6
        assert ask(stack.web_url, other_image, B)[1]["probabilities"] == alone["probabilities"]


def test_the_memory_is_the_databases(stack, corrected, weak_model_dir):
    """A second web app sees it at once; it outlives the web app's restart; a new version (another model:
    features of its own) re-derives it from the stored drawings."""
    image, label = corrected
    second = Stack(stack.run_dir, stack.model_store, stack.port_base)
    second.web_port = free_port_base(1)
    second.web_url = f"http://127.0.0.1:{second.web_port}"
    second.start_web()
    try:
        answer = ask(second.web_url, image, A)[1]
        assert answer["digit"] == label and answer["adapted"] is True
    finally:
        second.stop_web()
    stack.stop_web()
    stack.start_web()
    answer = ask(stack.web_url, image, A)[1]
    assert answer["digit"] == label and answer["adapted"] is True
    archive(weak_model_dir, stack.model_store, "2.0")
    assert make(stack, "register", "2.0").returncode == 0
    try:
        new = stack.web_url + "/predict?version=2.0"
        status, answer = post(new, image, "text/plain", {"X-Writer": A})
        plain = post(new, image, "text/plain")[1]
        assert status == 200 and answer["version"] == "2.0" and answer["adapted"] is True
        assert answer["probabilities"][label] > plain["probabilities"][label]
    finally:
        make(stack, "unregister", "2.0")


def test_delete_empties_the_memory(stack, corrected):
    image, label = corrected
    assert ask(stack.web_url, image, A)[1].get("adapted") is True
    assert delete_writer(stack.web_url, A) == (200, {"deleted": 1})
    plain = ask(stack.web_url, image)[1]
    answer = ask(stack.web_url, image, A)[1]
    assert "adapted" not in answer and answer["probabilities"] == plain["probabilities"]
    assert delete_writer(stack.web_url, A) == (200, {"deleted": 0})


@pytest.mark.parametrize("bad", ["short", "not-base64url!!!!!!!!!!!!!!!", "x" * 129, "a b" * 10])
def test_a_malformed_writer_is_a_400(stack, bad):
    digit = pendigits.held_out(pendigits.load())[0]
    image = data_url(pendigits.render(pendigits.layout(digit, random.Random(1))))
    for path in ("/predict", "/read"):
        status, answer = ask(stack.web_url, image, bad, path)
        assert status == 400 and "X-Writer" in answer["error"]
    assert delete_writer(stack.web_url, bad)[0] == 400
    feedback = urllib.request.Request(
        stack.web_url + "/api/feedback",
        data=b"{}",
        headers={"Content-Type": "application/json", "X-Writer": bad},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(feedback, timeout=30)
    assert refused.value.code == 400 and "X-Writer" in json.loads(refused.value.read())["error"]
