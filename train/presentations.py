"""Real digits presented in several ordinary ways: what the "not a digit" threshold is chosen on, and
what metrics.json reports refused for each (docs/not-a-digit.md, "The threshold").

A threshold chosen on one presentation holds on that one: MNIST drawn as train/mnist_canvas.py draws it
refused 0.34% of real digits, the same digits upscaled whole three times as many. So the threshold is
the loosest of those each presentation asks for, and each is measured apart on held-out digits:

  mnist_canvas    train/mnist_canvas.py's rendering (random size, position and stroke)
  mnist_upscaled  the whole 28x28 upscaled to the 280x280 canvas (Lanczos), white on black
  mnist_thin      mnist_canvas at its thinnest stroke (the highest ink cut)
  mnist_thick     mnist_canvas at its thickest stroke (the lowest ink cut)
  mnist_small     mnist_canvas at 35% of the canvas's height
  mnist_large     mnist_canvas at 85% of it
  pen             pen digits (train/pen_data.py), a random brush, size and place
Validation: MNIST's validation split and the training writers' kept-out pen digits; held out: MNIST's
test set and writers 21-30.
"""

import hashlib
import os
import random
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from handler.errors import InputError
from handler.ink import ink_map
from handler.mnist_form import to_mnist
from train import cache, mnist_canvas

CANVAS = mnist_canvas.CANVAS
# name -> mnist_canvas.draw's fixed choices ("upscaled": no draw at all)
MNIST = {
    "mnist_thin": {"ink_cut": mnist_canvas.INK_CUT[1]},
    "mnist_thick": {"ink_cut": mnist_canvas.INK_CUT[0]},
    "mnist_small": {"height": mnist_canvas.HEIGHT[0]},
    "mnist_large": {"height": mnist_canvas.HEIGHT[1]},
    "mnist_upscaled": None,
}


def upscaled(digit: np.ndarray) -> Image.Image:
    """The whole 28x28 digit as the canvas: 10x larger, white ink on black, as MNIST itself is."""
    return Image.fromarray(digit).resize((CANVAS, CANVAS), Image.Resampling.LANCZOS)


def _render(job):
    digit, name, seed = job
    how = MNIST[name]
    canvas = upscaled(digit) if how is None else mnist_canvas.draw(digit, random.Random(seed), **how)
    try:
        return (to_mnist(ink_map(canvas)) * 255).round().astype(np.uint8), True
    except InputError:  # refused as 'no digit drawn', as the stack would answer it
        return np.zeros((28, 28), np.uint8), False


def mnist_presented(
    name: str, images: np.ndarray, indices: np.ndarray, split: str, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(28x28 uint8 images as serving would feed them, ok flags) of images[indices] presented as `name`,
    laid out with mnist_canvas's own seeds (the same digits at the same places as mnist_canvas renders)."""

    def compute():
        jobs = [(images[i], name, mnist_canvas.render_seed(split, int(i))) for i in indices]
        with Pool(os.cpu_count()) as pool:
            out = pool.map(_render, jobs, chunksize=512)
        return {"images": np.stack([o[0] for o in out]), "ok": np.array([o[1] for o in out])}

    digest = hashlib.sha256(np.asarray(indices).tobytes()).hexdigest()
    key = cache.key(sys.modules[__name__], mnist_canvas, name=name, split=split, indices=digest)
    arrays = cache.cached(cache_dir, f"{name}-{split}", key, compute)
    return arrays["images"], arrays["ok"]


def mnist_sets(train_images, train_labels, val_index, test_images, test_labels, cache_dir: Path) -> dict:
    """{name: ((validation x, y), (held-out x, y))} of every MNIST presentation above but mnist_canvas
    (training has that one already), as uint8 tensors; a digit refused as blank is left out of both."""
    import torch

    def presented(name, images, labels, indices, split):
        x, ok = mnist_presented(name, images.numpy(), indices.numpy(), split, cache_dir)
        keep = torch.from_numpy(ok)
        return torch.from_numpy(x)[keep], labels[indices][keep]

    every_test = torch.arange(len(test_images))
    return {
        name: (
            presented(name, train_images, train_labels, val_index, "train"),
            presented(name, test_images, test_labels, every_test, "test"),
        )
        for name in MNIST
    }
