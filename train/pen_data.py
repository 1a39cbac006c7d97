"""Real pen digits as extra training data: the hooked 1s, open 4s and flat-topped 7s that people
draw and MNIST's writers rarely did.

Only the trainable writers (1-20) are trained on; writers 21-30 stay held out, rendered here only to
measure (accuracy and calibration in metrics.json, the same drawings as train/canvases.py).
Each digit is laid out on a 280x280 canvas PEN_COPIES times (a knob of train/train.py; random brush,
size, position), rendered and turned into 28x28 by handler/mnist_form.py, the serving code itself, so
training sees exactly what the model will be fed. Renders are cached on disk (train/cache.py).

Without the file (PEN_DIGITS, ../shared/pen-digits, data/pen-digits) it is downloaded from UCI
(train/pen_download.py); with no network, training uses MNIST alone.
"""

import hashlib
import os
import random
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from handler.ink import ink_map
from handler.mnist_form import to_mnist
from train import cache, pen_download, pendigits

RENDER_SEED = 7  # renders do not depend on the training seed, so all seeds share one cache


def _to_28x28(args):
    drawing, supersample = args
    return (
        (to_mnist(ink_map(pendigits.render(drawing, supersample=supersample))) * 255).round().astype(np.uint8)
    )


def _render_all(drawings, supersample):
    with Pool(os.cpu_count()) as pool:
        return np.stack(pool.map(_to_28x28, [(d, supersample) for d in drawings], chunksize=128))


def available(path: Path, may_download: bool, url: str | None = None) -> bool:
    """The pen-digit file is there, or (may_download: path is data/'s) has just been downloaded there
    (from url, by default train/pen_download.py's)."""
    if path.exists():
        return True
    if not may_download:
        print(f"pen digits: PEN_DIGITS={path} does not exist: training on MNIST alone")
        return False
    return pen_download.download(path, url) is not None


def pen_training_set(
    path: Path,
    copies: int,
    tune: bool,
    may_download: bool = False,
    cache_dir: Path = cache.DEFAULT_DIR,
    url: str | None = None,
):
    """(images uint8 N x 28 x 28, labels) of the trainable pen digits in path, each rendered `copies`
    times (writers 17-20 left out when tune), or None without the file (downloaded from url first when
    may_download)."""
    if copies <= 0 or not available(path, may_download, url):
        return None
    digits = pendigits.trainable(pendigits.load(path), tune) * copies

    def compute():
        # 2x supersampling is antialiasing enough at 28x28 and renders twice as fast as 4x.
        drawings = [
            pendigits.layout(d, random.Random(RENDER_SEED * 1_000_003 + i)) for i, d in enumerate(digits)
        ]
        return {"images": _render_all(drawings, 2), "labels": np.array([d.label for d in digits])}

    key = cache.key(
        sys.modules[__name__],
        pendigits,
        copies=copies,
        file=path.stat().st_size,
        tune=sorted(pendigits.TUNE_WRITERS) if tune else [],
    )
    arrays = cache.cached(cache_dir, "pen-train", key, compute)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"])


def pen_held_out_set(
    path: Path, writers=pendigits.held_out, cache_dir: Path = cache.DEFAULT_DIR, layouts: int = 1
):
    """Writers 21-30 (writers=pendigits.held_out) as train/canvases.py draws them (layouts from one
    Random(0), 4x supersampled), to measure only (or, with pendigits.tuning, writers 17-20 under TUNE=1;
    with pendigits.validation, the training writers' digits kept out of training); each digit in
    `layouts` layouts one after another; None without them."""
    if not path.exists():
        return None
    digits = writers(pendigits.load(path))
    if not digits:
        return None

    def compute():
        rng = random.Random(0)
        drawings = [pendigits.layout(d, rng) for _ in range(layouts) for d in digits]
        return {
            "images": _render_all(drawings, pendigits.SUPERSAMPLE),
            "labels": np.array([d.label for _ in range(layouts) for d in digits]),
        }

    # Which digits, not the function's name: a lambda's name says nothing (TUNE=1 takes other writers).
    which = hashlib.sha256(repr([(d.writer, d.label, d.strokes) for d in digits]).encode()).hexdigest()
    key = cache.key(sys.modules[__name__], pendigits, file=path.stat().st_size, digits=which, layouts=layouts)
    arrays = cache.cached(cache_dir, f"pen-{writers.__name__.replace('_', '-').strip('<>')}", key, compute)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"])
