"""Feedback from the page (web/feedback_store.py) as training and evaluation data.

Every stored drawing goes through handler/preprocess.py again, the code that serves: the 28x28 a model
trained now learns from is what it will be fed, even if preprocessing changed since the row was stored.
A fixed share of the drawings is held out for evaluation and never trained on. Which ones is decided by
a hash of the PNG bytes: the same on every run and every machine, a row never changes sides as rows are
added, and the same drawing sent twice lands on the same side (no copy of a hold-out drawing in training).

    from train.feedback_data import feedback_split, holdout_drawings
    (train_x, train_y), (holdout_x, holdout_y) = feedback_split("data/feedback.sqlite3")  # uint8 N x 28 x 28, int64
    for png, label in holdout_drawings("data/feedback.sqlite3"): ...   # for evaluation through TorchServe

`make train FEEDBACK_DB=...` adds the training part (FEEDBACK_COPIES times) to MNIST and pen digits.
Labels are as stored: a drawing a person confirmed as "not a digit" is label 10, a training negative for
the model's 11th output; a rejected drawing corrected to a digit is that digit (docs/not-a-digit.md).
"""

import base64
from pathlib import Path

import numpy as np
import torch

from handler.preprocess import InputError, ink_map, open_image, to_mnist
from web.feedback_store import Row, masked, read_rows

HOLDOUT_PERCENT = 20  # of the drawings, by hash; changing it moves drawings between the sides


def held_out(png_sha256: str) -> bool:
    return int(png_sha256[:8], 16) % 100 < HOLDOUT_PERCENT


def feedback_rows(db: str) -> list[Row]:
    """Every row of the feedback database at db (a SQLite path or a database URL)."""
    if "://" not in db and not Path(db).is_file():
        raise FileNotFoundError(f"no feedback database at {db}")  # never create an empty one by mistake
    return read_rows(db)


def to_28x28(png: bytes) -> np.ndarray:
    """The stored drawing as the model is fed it now: uint8 28x28, 255 = ink (as MNIST's images)."""
    return (to_mnist(ink_map(open_image(png))) * 255).round().astype(np.uint8)


def _as_tensors(rows: list[Row]):
    images, labels = [], []
    for row in rows:
        try:
            images.append(to_28x28(row.png))
        except InputError:  # preprocessing changed and no longer reads it as a digit: nothing to learn
            continue
        labels.append(row.label)
    x = torch.from_numpy(np.stack(images)) if images else torch.zeros((0, 28, 28), dtype=torch.uint8)
    return x, torch.tensor(labels, dtype=torch.int64)


def feedback_split(db: str):
    """((train images, labels), (hold-out images, labels)): uint8 N x 28 x 28 and int64 N tensors."""
    rows = feedback_rows(db)
    train = [row for row in rows if not held_out(row.png_sha256)]
    holdout = [row for row in rows if held_out(row.png_sha256)]
    return _as_tensors(train), _as_tensors(holdout)


def holdout_drawings(db: str) -> list[tuple[bytes, int]]:
    """The hold-out as the page sent it: (PNG bytes, label) pairs, to evaluate a version through TorchServe."""
    return [(row.png, row.label) for row in feedback_rows(db) if held_out(row.png_sha256)]


def data_url(png: bytes) -> str:
    """A PNG as the page's canvas.toDataURL() gives it, the body /predict expects."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def feedback_training_set(db: str, copies: int, max_images: int):
    """(images, labels) to add to training from the database db, hold-out excluded; None when db is "".

    Each training drawing appears `copies` times per epoch (augmented differently each time): a few
    hundred corrections must count against 60,000 MNIST and 20,000 pen renders. Epochs are counted over
    every image, so feedback lengthens training: at most max_images feedback images per epoch until there
    are more drawings than that, each then once (train/train.py's FEEDBACK_COPIES, FEEDBACK_IMAGES)."""
    if not db or copies <= 0:
        return None
    (x, y), (holdout_x, _) = feedback_split(db)
    copies = copies_of(len(x), copies, max_images)
    print(
        f"feedback from {masked(db)}: training on {len(x)} drawings x {copies}, "
        f"{len(holdout_x)} held out for evaluation"
    )
    return x.repeat(copies, 1, 1), y.repeat(copies)


def copies_of(drawings: int, copies: int, max_images: int) -> int:
    """copies, fewer once drawings x copies would pass max_images, and never none."""
    return max(1, min(copies, max_images // max(1, drawings)))
