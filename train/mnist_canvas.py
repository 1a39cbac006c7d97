"""MNIST digits drawn on a canvas and read back by the serving preprocessing, so that training sees what
serving will feed the model (handler/mnist_form.py re-crops, re-centres and normalises stroke width:
a model trained on MNIST's own 28x28 images reads those a little worse).

Each digit is upscaled to a random height of 35-85% of a 280x280 canvas (as train/pendigits.layout
places pen digits), given crisp edges at a random ink cut (which also varies the stroke width, as
brushes do), put at a random position, black on white like the page, then ink_map + to_mnist.
The per-image randomness comes from RENDER_SEED and the image's index, not from the training seed,
so every training seed shares one cache.
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
from train import cache

CANVAS = 280
HEIGHT = (0.35, 0.85)  # the digit's height as a share of the canvas
MARGIN = 4  # px kept clear at the canvas edge
# Where the upscaled grey edge becomes ink: thinner strokes at a higher cut. Not above ~half the ink:
# higher cuts (0.6 was tried) break MNIST's faint thin strokes into dots, which no canvas brush draws.
INK_CUT = (0.2, 0.45)
EDGE = 0.1  # width of the antialiased edge, as a share of full ink
RENDER_SEED = 20_260_515
SPLITS = {"train": 0, "test": 1}  # a digit's renders differ between MNIST's two files


def draw(
    digit: np.ndarray, rng: random.Random, canvas: int = CANVAS, height=None, ink_cut=None
) -> Image.Image:
    """One MNIST digit (uint8 28x28, white on black) drawn on a white canvas in black ink; `height` (a
    share of the canvas) and `ink_cut` fixed instead of drawn at random (train/presentations.py)."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    room = canvas - 2 * MARGIN
    drawn_height, drawn_cut = rng.uniform(*HEIGHT), rng.uniform(*INK_CUT)  # drawn either way: same layouts
    scale = min((height or drawn_height) * canvas / h, room / h, room / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    big = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255
    # Upscaled, MNIST's 1-2 px grey edges become ramps `scale` px wide; a canvas stroke's edge is sharp.
    ink = np.clip((big - (ink_cut or drawn_cut)) / EDGE + 0.5, 0, 1)
    page = np.zeros((canvas, canvas), dtype=np.float32)
    top = rng.randint(MARGIN, canvas - MARGIN - size[1])
    left = rng.randint(MARGIN, canvas - MARGIN - size[0])
    page[top : top + size[1], left : left + size[0]] = ink
    return Image.fromarray((255 - page * 255).round().astype(np.uint8))


def render_seed(split: str, index: int) -> int:
    """The seed of image `index` of MNIST's `split` file: train/canvases.py draws the same."""
    return (RENDER_SEED * 10 + SPLITS[split]) * 100_000 + index


def _through_pipeline(job):
    digit, seed = job
    try:
        return (to_mnist(ink_map(draw(digit, random.Random(seed)))) * 255).round().astype(np.uint8), True
    except InputError:  # read as 'no digit drawn', as the real stack would answer it
        return np.zeros((28, 28), np.uint8), False


def through_pipeline(
    images: np.ndarray, indices: np.ndarray, split: str, cache_dir: Path = cache.DEFAULT_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """(28x28 uint8 images as serving would feed them, ok flags) of images[indices], cached in cache_dir."""

    def compute():
        jobs = [(images[i], render_seed(split, int(i))) for i in indices]
        with Pool(os.cpu_count()) as pool:
            out = pool.map(_through_pipeline, jobs, chunksize=512)
        return {"images": np.stack([o[0] for o in out]), "ok": np.array([o[1] for o in out])}

    key = cache.key(
        sys.modules[__name__], split=split, indices=hashlib.sha256(np.asarray(indices).tobytes()).hexdigest()
    )
    arrays = cache.cached(cache_dir, f"mnist-{split}", key, compute)
    return arrays["images"], arrays["ok"]
