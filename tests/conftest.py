"""Shared fixtures: a model trained for the tests, and the real stack (TorchServe + web app) serving it.

The model is trained here, quickly (TEST_ARCH, default convnet, a short run), unless TEST_MODEL_DIR
points at a trained one (a directory with model.pt and metrics.json), e.g. build/convnet.
MNIST comes from MNIST_DIR (CI: ../shared/mnist); pen digits from PEN_DIGITS (default
../shared/pen-digits/pendigits-orig.tra). Both are required: a missing one is an error, not a skip.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import ROOT, Stack, archive

MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT / "data"))
# The default network, briefly (about a minute on 2 cores): good enough that tests on real drawings
# can expect nearly all of them right.
# 20,000 of MNIST's images: on a cold cache (CI) rendering them through the serving preprocessing
# costs a third of all 55,000; 3.5 epochs of 25,000 images are as many steps as 1.5 of 60,000 were.
QUICK_TRAINING = {
    "ARCH": os.environ.get("TEST_ARCH", "convnet"),
    "EPOCHS": "3.5",
    "SEED": "0",
    "PEN_COPIES": "1",
    "MNIST_SUBSET": "20000",
    # Each training glyph 3 times and 300 of each shape kind: ~4,300 drawings that are not digits, enough
    # for the letters the tests draw to be answered "not a digit" (docs/not-a-digit.md).
    "NONDIGIT_COPIES": "3",
}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    if os.environ.get("TEST_MODEL_DIR"):
        return Path(os.environ["TEST_MODEL_DIR"]).resolve()
    out = tmp_path_factory.mktemp("model")
    env = {**os.environ, **QUICK_TRAINING, "MNIST_DIR": str(MNIST_DIR), "OUT_DIR": str(out)}
    subprocess.run([sys.executable, "-m", "train.train"], cwd=ROOT, env=env, check=True)
    return out


@pytest.fixture(scope="session")
def model_store(model_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("model_store")
    archive(model_dir, store, "1.0")
    return store


@pytest.fixture(scope="session")
def stack(model_store, tmp_path_factory):
    """The shared stack: tests that use it must leave it as they found it (running, version 1.0)."""
    running = Stack(tmp_path_factory.mktemp("run"), model_store).start()
    yield running
    running.stop()


@pytest.fixture
def own_stack(model_dir, tmp_path):
    """A stack of the test's own, for tests that stop, kill or re-register things."""
    store = tmp_path / "model_store"
    archive(model_dir, store, "1.0")
    running = Stack(tmp_path / "run", store).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def weak_model_dir(tmp_path_factory) -> Path:
    """A deliberately weak version: LeNet after 100 steps on MNIST alone, ten outputs (~87% on MNIST, ~70% on pen
    digits), for the evaluation gate and shadow/canary tests. TEST_WEAK_MODEL_DIR skips the training."""
    if os.environ.get("TEST_WEAK_MODEL_DIR"):
        return Path(os.environ["TEST_WEAK_MODEL_DIR"]).resolve()
    out = tmp_path_factory.mktemp("weak_model")
    # Ten outputs (no "not a digit"): also the older kind of version that must keep answering.
    weak = {"ARCH": "lenet", "MAX_STEPS": "100", "PEN_COPIES": "0", "SEED": "0", "NONDIGIT_COPIES": "0"}
    env = {**os.environ, **weak, "MNIST_DIR": str(MNIST_DIR), "OUT_DIR": str(out)}
    subprocess.run([sys.executable, "-m", "train.train"], cwd=ROOT, env=env, check=True, capture_output=True)
    return out
