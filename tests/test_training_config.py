"""metrics.json's "config" holds every knob of the run, and CONFIG_FROM re-runs the recipe from it."""

import json
import os
import subprocess
import sys

import pytest

from tests.models import MNIST_DIR, MNIST_SUBSET
from tests.stack import ROOT

pytestmark = pytest.mark.train

# A few steps of LeNet on the tests' MNIST subset (its renders are in the cache), no pen digits
# (a file that is not there), some knobs off their defaults so the recipe is not just the defaults.
RECIPE = {
    "ARCH": "lenet",
    "MAX_STEPS": "3",
    "MNIST_SUBSET": MNIST_SUBSET,
    "LR": "0.05",
    "ELASTIC": "0.03",
    "LABEL_SMOOTHING": "0.05",
    "THREADS": "1",
    "UPSCALED": "0",  # and no upscaled renders to make on a cold cache
    # Nor drawings that are not digits: with them a run took 109 s here, without 14 s (their renders and
    # the threshold's presentations); the recipe's round trip is the same either way.
    "NONDIGIT_COPIES": "0",
}


def train(env: dict, command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_metrics_config_reruns_the_same_recipe(tmp_path):
    knobs = json.loads(
        subprocess.check_output(
            [sys.executable, "-c", "import json; from train import train; print(json.dumps(train.CONFIG))"],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "CONFIG_FROM"},
        )
    )
    # No knob from the caller's environment but those given: the run's config is the recipe and defaults.
    clean = {k: v for k, v in os.environ.items() if k not in knobs and k != "CONFIG_FROM"}
    first = tmp_path / "first"
    missing_pen = str(tmp_path / "no-pen-digits.tra")
    env = {**clean, **RECIPE, "MNIST_DIR": str(MNIST_DIR), "PEN_DIGITS": missing_pen, "OUT_DIR": str(first)}
    if "CACHE_DIR" in os.environ:
        env["CACHE_DIR"] = os.environ["CACHE_DIR"]
    train(env, [sys.executable, "-m", "train.train"])
    metrics = json.loads((first / "metrics.json").read_text())
    config = metrics["config"]
    assert set(config) == set(knobs)  # every knob, nothing else
    for name, value in RECIPE.items():
        assert config[name] == type(config[name])(value), name
    assert config["PEN_DIGITS"] == missing_pen and config["SEED"] == 0 and config["EPOCHS"] == 8.5

    # Re-run from the result alone, as `make train CONFIG_FROM=...`: no knob in the environment, and the
    # Makefile's own defaults (ARCH=convnet, MNIST_DIR=data, MODEL_DIR) must not override the recipe.
    done = train(clean, ["make", "-s", "train", f"CONFIG_FROM={first / 'metrics.json'}"])
    rerun = first.parent / "first-rerun"  # never the recipe's own directory
    assert "wrote " + str(rerun) in done.stdout
    again = json.loads((rerun / "metrics.json").read_text())
    assert again["config"] == config
    assert (again["steps"], again["test_accuracy"]) == (metrics["steps"], metrics["test_accuracy"])

    # An environment variable still wins over the recipe.
    overridden = subprocess.check_output(
        [sys.executable, "-c", "import json; from train import train; print(json.dumps(train.CONFIG))"],
        cwd=ROOT,
        env={**clean, "CONFIG_FROM": str(first / "metrics.json"), "LR": "0.2"},
    )
    assert json.loads(overridden) == {**config, "LR": 0.2}


def test_an_unknown_rejection_is_refused_before_any_data_is_loaded(tmp_path):
    """A typo in REJECTION ends the run at once with what to choose, not after minutes of loading: here
    MNIST is not even there to load."""
    env = {**os.environ, "REJECTION": "heads", "MNIST_DIR": str(tmp_path / "none"), "OUT_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "train.train"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "REJECTION='heads': choose head or class" in done.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "model.pt").exists()
