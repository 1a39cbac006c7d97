"""Real pen digits as extra training data: the hooked 1s, open 4s and flat-topped 7s that people
draw and MNIST's writers rarely did.

Only the trainable writers (1-20) are used; writers 21-30 stay held out for bench/canvas_accuracy.py.
Each digit is laid out on a 280x280 canvas PEN_COPIES times (random brush, size, position), rendered
and turned into 28x28 by handler/preprocess.py, the serving code itself, so training sees exactly
what the model will be fed. Without the pen-digit file (PEN_DIGITS) training uses MNIST alone.
"""

import os
import random
from multiprocessing import Pool

import numpy as np
import torch

from handler.preprocess import ink_map, to_mnist
from train import pendigits

PEN_COPIES = int(os.environ.get("PEN_COPIES", 4))


def _to_28x28(args):
    digit, seed = args
    drawing = pendigits.layout(digit, random.Random(seed))
    # 2x supersampling is antialiasing enough at 28x28 and renders twice as fast as 4x.
    ink = ink_map(pendigits.render(drawing, supersample=2))
    return (to_mnist(ink) * 255).round().astype(np.uint8)


def pen_training_set(seed: int):
    """(images uint8 N x 28 x 28, labels) of rendered trainable pen digits, or None without the file."""
    if not pendigits.PATH.exists() or PEN_COPIES <= 0:
        return None
    digits = pendigits.trainable(pendigits.load()) * PEN_COPIES
    jobs = [(digit, seed * 1_000_003 + i) for i, digit in enumerate(digits)]
    with Pool(os.cpu_count()) as pool:
        images = pool.map(_to_28x28, jobs, chunksize=256)
    return torch.from_numpy(np.stack(images)), torch.tensor([d.label for d in digits])
