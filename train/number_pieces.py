"""Digits as POST /read cuts them out of numbers: what the model needs to read a digit cut from a string
(a neighbour's ink at the edge, a cut through touching strokes), and to say "not a digit" of a piece
that holds two digits or a part of one, so that choose() cuts where the digits meet (docs/reading.md).

Numbers of the training writers' digits (train/numbers.py, writers 1-20 less the validation digits) go
through handler/segment.py read_candidates, the serving code; each candidate piece is labelled by the
share of each digit's own ink (the digit drawn alone) inside the piece's box:
  - COVERED or more of one digit and at most STRAY of any other (a neighbour's edge): that digit;
  - HALF or more of two digits, or at most PART of one and STRAY of the others (a part of a digit, what
    an over-cut leaves): not a digit (10), so that choose() prefers the cut between two digits;
  - anything else (most of a digit and a good part of the next): left out, as a piece that can honestly
    be read either way.
Cached in CACHE_DIR like the other renders (train/cache.py).
"""

import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from handler.answers import NOT_A_DIGIT
from handler.errors import InputError
from handler.segment import read_candidates
from train import cache, numbers, pendigits

COVERED, STRAY, HALF, PART = 0.85, 0.15, 0.5, 0.6
RENDER_SEED = 27


def label(box: list, inks: list) -> int | None:
    """A candidate's label from its box (x, y, w, h) and each digit's own ink (the digit drawn alone:
    HxW arrays, > 0 where it has ink); None: left out."""
    x, y, w, h = box
    covers = [float((ink[y : y + h, x : x + w] > 0).sum()) / max(1, int((ink > 0).sum())) for ink in inks]
    ranked = sorted(range(len(inks)), key=lambda i: -covers[i])
    best, second = covers[ranked[0]], covers[ranked[1]] if len(inks) > 1 else 0.0
    if best >= COVERED and second <= STRAY:
        return ranked[0]
    if second >= HALF or (best <= PART and second <= STRAY):  # two digits, or a part of one
        return NOT_A_DIGIT
    return None


def _pieces(number: numbers.Number) -> tuple[list, list]:
    try:
        candidates = read_candidates(number.png)
    except InputError:  # a composed number the reader refuses (two lines, specks): nothing to learn
        return [], []
    inks = [255 - np.asarray(pendigits.render(d, number.canvas, supersample=2)) for d in number.drawings]
    images, labels = [], []
    for image, box in zip(candidates.images, candidates.boxes, strict=True):
        which = label(box, inks)
        if which is not None:
            images.append((image * 255).round().astype(np.uint8))
            labels.append(NOT_A_DIGIT if which == NOT_A_DIGIT else int(number.label[which]))
    return images, labels


def number_piece_set(path: Path, count: int, tune: bool = False, cache_dir: Path = cache.DEFAULT_DIR):
    """(images uint8 N x 28 x 28, labels 0-10) of the pieces of `count` numbers of the training writers'
    digits in the pen-digit file at path, or None; tune: without writers 17-20 (TUNE=1 measures on them,
    so their digits must not be trained on here either)."""
    if count <= 0:
        return None

    def compute():
        digits = pendigits.trainable(pendigits.load(path), tune)
        made = numbers.numbers(digits, count, random.Random(RENDER_SEED))
        with ProcessPoolExecutor() as pool:
            found = list(pool.map(_pieces, made, chunksize=64))
        images = [image for some, _ in found for image in some]
        return {
            "images": np.stack(images),
            "labels": np.array([label for _, some in found for label in some], dtype=np.int64),
        }

    key = cache.key(
        sys.modules[__name__],
        numbers,
        pendigits,
        count=count,
        file=path.stat().st_size,
        tune=sorted(pendigits.TUNE_WRITERS) if tune else [],
    )
    arrays = cache.cached(cache_dir, "number-pieces", key, compute)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"])
