"""The piece reader (train/piece_reader.py): trained on the pieces /read cuts out of numbers and on digits
drawn alone, saved beside a model as TorchScript that the handler and read_number take, recorded in the
model's metrics.json; never written into the shipped model."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from handler.answers import PIECE_READER_FILE, read_number
from tests.drawings import data_url
from tests.stack import ROOT
from train import cache, numbers, pendigits
from train.piece_reader import train_piece_reader

pytestmark = pytest.mark.train

warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)


def test_a_small_piece_reader_is_torchscript_of_eleven_outputs_that_reads_numbers(tmp_path):
    """30 numbers' pieces and no digits alone (a cold cache renders them in seconds): the file is there,
    takes [0, 1] ink and gives 11 logits, and read_number reads with it; what it records adds up."""
    cache_dir = Path(os.environ.get("CACHE_DIR", cache.DEFAULT_DIR))
    found = train_piece_reader(tmp_path, 30, 0, False, 0, pendigits.PATH, cache_dir)
    assert found["numbers"] == 30 and found["images"] > 30 and found["steps"] >= 1
    net = torch.jit.load(str(tmp_path / PIECE_READER_FILE)).eval()
    with torch.inference_mode():
        assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 11)

    def knows_nothing(images):  # a digit reader that says 1/11 of everything
        return np.full((len(images), 11), 1 / 11)

    body = data_url(numbers.held_out(1, seed=3)[0].png)
    alone, weighed = (
        read_number(body, knows_nothing),
        read_number(body, knows_nothing, numbers.softmax_of(net)),
    )
    assert all(np.allclose(d["probabilities"], 0.1) for d in alone["digits"])
    assert any(not np.allclose(d["probabilities"], 0.1) for d in weighed["digits"])  # its say


def test_it_is_never_written_into_the_shipped_model():
    env = {**os.environ, "PIECES": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "train.piece_reader", str(ROOT / "model" / "default")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "shipped model" in done.stderr
    assert (
        json.loads((ROOT / "model" / "default" / "metrics.json").read_text())["piece_reader"]["numbers"]
        == 4000
    )
