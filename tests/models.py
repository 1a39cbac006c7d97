"""The models the tests serve: where MNIST is, the shipped model, and how a model is trained for a test.

The stack serves the shipped model (model/default) unless TEST_MODEL_DIR points at another trained one
(a directory with model.pt and metrics.json), e.g. build/convnet: the tests read drawings with what
`make run` serves. MNIST comes from MNIST_DIR (CI: ../shared/mnist); pen digits from PEN_DIGITS (default
../shared/pen-digits/pendigits-orig.tra). Both are required: a missing one is an error, not a skip.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.stack import ROOT

MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT / "data"))
SHIPPED = ROOT / "model" / "default"
# The tests that train (the weak version, the recipe's round trip, feedback) train on these 20,000 of
# MNIST's images (and its 5,000 validation ones): on a cold cache (CI) they are rendered through the
# serving preprocessing once, by the first, in a third of all 60,000's time.
MNIST_SUBSET = "20000"
# A deliberately weak version: LeNet after 100 steps on MNIST alone, ten outputs (~80% on MNIST, ~65% on
# pen digits), for the evaluation gate, shadow/canary tests and a second version that answers otherwise.
# Ten outputs (no "not a digit"): also the older kind of version that must keep answering.
WEAK_TRAINING = {
    "ARCH": "lenet",
    "MAX_STEPS": "100",
    "PEN_COPIES": "0",
    "SEED": "0",
    "NONDIGIT_COPIES": "0",
    "UPSCALED": "0",
    "MNIST_SUBSET": MNIST_SUBSET,
}


def served_model_dir() -> Path:
    """What the stack serves: the shipped model (model/default), unless TEST_MODEL_DIR names another."""
    return Path(os.environ.get("TEST_MODEL_DIR") or SHIPPED).resolve()


def train_model(out: Path, settings: dict, quiet: bool = True) -> Path:
    """`python -m train.train` with these settings into `out` (its output kept only if not quiet)."""
    env = {**os.environ, **settings, "MNIST_DIR": str(MNIST_DIR), "OUT_DIR": str(out)}
    subprocess.run([sys.executable, "-m", "train.train"], cwd=ROOT, env=env, check=True, capture_output=quiet)
    return out
