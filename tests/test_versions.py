"""Model versions through TorchServe's management API (the Makefile's targets), seen from the web app."""

import json
import urllib.request

import pytest

from tests.drawings import drawing
from tests.stack import archive, make, post


def models(stack) -> dict:
    with urllib.request.urlopen(stack.web_url + "/api/models", timeout=10) as response:
        return json.loads(response.read())


def test_register_set_default_pick_unregister_and_restart(own_stack, weak_model_dir):
    stack, image = own_stack, drawing()
    assert models(stack) == {"model": "mnist", "versions": ["1.0"], "default": "1.0"}

    archive(weak_model_dir, stack.model_store, "2.0")  # another network: its answers are its own
    registered = make(stack, "register", "2.0")
    assert registered.returncode == 0, registered.stderr
    assert models(stack) == {"model": "mnist", "versions": ["1.0", "2.0"], "default": "1.0"}
    assert post(stack.web_url + "/predict", image)[1]["version"] == "1.0"

    assert make(stack, "set-default", "2.0").returncode == 0
    assert models(stack)["default"] == "2.0"
    status, by_default = post(stack.web_url + "/predict", image)
    assert status == 200 and by_default["version"] == "2.0"
    status, picked = post(stack.web_url + "/predict?version=1.0", image)
    assert status == 200 and picked["version"] == "1.0"
    assert picked["probabilities"] != by_default["probabilities"], "two different models, one answer"

    listing = make(stack, "versions")
    assert listing.returncode == 0
    assert [line.split()[:2] for line in listing.stdout.splitlines() if line.startswith("*")] == [
        ["*", "2.0"]
    ]

    assert make(stack, "unregister", "1.0").returncode == 0
    status, answer = post(stack.web_url + "/predict?version=1.0", image)
    assert status == 404 and "version 1.0" in answer["error"] and "not registered" in answer["error"]
    assert models(stack) == {"model": "mnist", "versions": ["2.0"], "default": "2.0"}

    stack.stop_torchserve()
    stack.start_torchserve()  # the web app stays up and finds TorchServe back by itself
    assert models(stack) == {"model": "mnist", "versions": ["2.0"], "default": "2.0"}
    status, answer = post(stack.web_url + "/predict", image)
    assert status == 200 and answer["version"] == "2.0"
    assert answer["probabilities"] == pytest.approx(by_default["probabilities"], abs=1e-6)


def test_management_failures_are_clear_messages(own_stack):
    missing = make(own_stack, "register", "9.9")
    assert missing.returncode != 0 and "make archive VERSION=9.9" in missing.stderr
    unknown = make(own_stack, "set-default", "9.9")
    assert unknown.returncode != 0 and "9.9 does not exist" in unknown.stderr
    duplicate = make(own_stack, "register", "1.0")
    assert duplicate.returncode != 0 and "already registered" in duplicate.stderr
    status, answer = post(own_stack.web_url + "/predict?version=4.2", drawing())
    assert status == 404 and answer == {
        "error": "version 4.2 of model mnist is not registered on the model server"
    }
