"""The model shipped in model/default/ (what `make run` serves on a fresh clone) is the model its metrics.json
describes: it reads the held-out writers' pen digits as well as recorded there, so a stale, swapped or
half-copied model.pt fails CI; the Makefile serves it unless another MODEL_DIR is named, and no training
run writes into it.

The pen digits are the very set metrics.json's pen_held_out_accuracy was measured on: writers 21-30
(never trained on), drawn on canvases and put through the serving preprocessing exactly as train/train.py
draws them (train/pen_data.py, cached in CACHE_DIR), scored as train/train.py scores them. A change to the
preprocessing changes the images too (the cache key follows it), and a drop of more than TOLERANCE shows
that the shipped model no longer fits the handler it ships with.
"""

import json
import os
import subprocess
import warnings
from pathlib import Path

import torch

from tests.stack import ROOT
from train import cache, pendigits, shipped
from train.pen_data import pen_held_out_set
from train.rejection import digit_probabilities

SHIPPED = ROOT / "model" / "default"
TOLERANCE = 0.002  # 0.2 points of 2,498 digits: 5 digits read otherwise


def metrics() -> dict:
    return json.loads((SHIPPED / "metrics.json").read_text())


def test_the_shipped_model_reads_held_out_pen_digits_as_its_metrics_json_says():
    # Required, as for every test on pen digits (tests/models.py): a missing file is an error, not a skip.
    assert pendigits.PATH.exists(), f"{pendigits.PATH} not found: set PEN_DIGITS (CI: ../shared/pen-digits)"
    images, labels = pen_held_out_set(
        pendigits.PATH, cache_dir=Path(os.environ.get("CACHE_DIR", cache.DEFAULT_DIR))
    )
    assert len(labels) == 2498 and set(pendigits.HELD_OUT_WRITERS) == set(range(21, 31))
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
    model = torch.jit.load(str(SHIPPED / "model.pt"), map_location="cpu").eval()
    with torch.inference_mode():  # as train/train.py's as_input and digit_probabilities
        logits = torch.cat([model(batch.unsqueeze(1).float() / 255) for batch in images.split(500)])
    accuracy = (digit_probabilities(logits).argmax(1) == labels).float().mean().item()
    recorded = metrics()["pen_held_out_accuracy"]
    print(f"\nshipped model: {accuracy:.4%} of held-out pen digits, metrics.json says {recorded:.4%}")
    assert abs(accuracy - recorded) <= TOLERANCE


def test_the_shipped_model_says_how_it_was_made():
    recipe = metrics()["config"]
    assert recipe["ARCH"] == metrics()["arch"] and {"SEED", "EPOCHS", "MNIST_SUBSET"} <= set(recipe)
    assert (SHIPPED / "README.md").read_text().startswith("# The shipped model")
    # Committed, not ignored like every other model.pt.
    ignored = subprocess.run(["git", "check-ignore", "-q", str(SHIPPED / "model.pt")], cwd=ROOT)
    assert ignored.returncode == 1


def make_dry_run(*args: str) -> str:
    """The commands `make -n` would run, with MODEL_DIR from neither the caller's environment nor ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "MAKEFLAGS")}
    result = subprocess.run(["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_serves_the_shipped_model_unless_another_is_named():
    assert "--serialized-file model/default/model.pt" in make_dry_run("run")
    assert "--serialized-file model/default/model.pt" in make_dry_run("image")
    named = make_dry_run("run", "MODEL_DIR=build/mine")
    assert "--serialized-file build/mine/model.pt" in named and "--serialized-file model/default" not in named
    assert "OUT_DIR=build/mine " in named  # not there yet: trained first, into the directory named


def test_make_train_writes_into_build_and_never_into_the_shipped_model():
    assert "OUT_DIR=build/convnet " in make_dry_run("train")
    assert "OUT_DIR=build/lenet " in make_dry_run("train", "ARCH=lenet")
    before = {path.name: path.stat().st_mtime_ns for path in SHIPPED.iterdir()}
    # The real target, not a dry run: it stops before train/train.py starts.
    for out in ("model/default", "model/default/", "model/../model/default/sub"):
        result = subprocess.run(
            ["make", "-s", "train", f"MODEL_DIR={out}"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 2 and "is the shipped model" in result.stderr, result.stderr[-2000:]
        assert "train.train" not in result.stdout
    assert {path.name: path.stat().st_mtime_ns for path in SHIPPED.iterdir()} == before
    # train/train.py itself (python -m train.train, CONFIG_FROM=... without MODEL_DIR) asks the same rule.
    for out in ("model/default", str(SHIPPED / "x"), "model/./default/"):
        assert "is the shipped model" in shipped.refusal(out)
    for out in ("build/convnet", "model/default-rerun", "model"):
        assert shipped.refusal(out) is None
