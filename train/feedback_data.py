"""Feedback from the page (web/feedback_store.py) as training and evaluation data.

Every stored drawing goes through handler/mnist_form.py again, the code that serves: the 28x28 a model
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

Feedback on numbers (/read, table number_feedback) becomes training digits: each drawing is cut as /read
cuts it (handler/segment.py read_candidates, handler/answers.py choose) and, if it comes apart in as many pieces as the
number meant has digits, each piece's 28x28 gets its digit ("not_a_digit": one piece, label 10); any
other drawing is skipped, and counted. The hold-out is decided by the drawing's hash, as for digits.
"""

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy.engine import make_url

from handler.answers import choose
from handler.decode import open_image
from handler.errors import InputError
from handler.ink import ink_map
from handler.mnist_form import to_mnist
from handler.segment import read_candidates
from web.feedback_store import NOT_A_DIGIT, NOT_A_NUMBER, Row, read_number_rows, read_rows

HOLDOUT_PERCENT = 20  # of the drawings, by hash; changing it moves drawings between the sides


def masked(db: str) -> str:
    """FEEDBACK_DB fit for a log line or metrics.json: a URL's password hidden."""
    return make_url(db).render_as_string(hide_password=True) if "://" in db else db


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


def _digit_rows(rows: list[Row]) -> list[tuple[np.ndarray, int]]:
    found = []
    for row in rows:
        try:
            found.append((to_28x28(row.png), row.label))
        except InputError:  # preprocessing changed and no longer reads it as a digit: nothing to learn
            continue
    return found


def number_digits(png: bytes, number: str, probabilities_of: Callable | None = None):
    """[(uint8 28x28, digit), ...] of a number's drawing, cut as /read cuts it; None when it does not come
    apart in one piece per digit of number (or no longer reads at all). The cut between touching digits is
    the model's choice: probabilities_of as handler/answers.py read_number takes it; without one, every
    piece scores alike and each group of ink stays whole (digits written apart)."""
    labels = [NOT_A_DIGIT] if number == NOT_A_NUMBER else [int(digit) for digit in number]
    try:
        candidates = read_candidates(png)
    except InputError:
        return None
    images = candidates.images
    if not probabilities_of:  # pieces alike: the fewest would win, and a narrow number is no one digit
        candidates.one = None
    scores = probabilities_of(images) if probabilities_of else np.full((len(images), 10), 0.1, np.float32)
    digits = choose(candidates, np.asarray(scores))
    if len(digits) != len(labels):
        return None
    return [
        ((images[d.index] * 255).round().astype(np.uint8), label)
        for d, label in zip(digits, labels, strict=True)
    ]


@dataclass
class Split:
    train: list  # [(uint8 28x28, label), ...]
    holdout: list
    numbers: int = 0  # number drawings cut into digits
    skipped: int = 0  # number drawings that did not come apart in one piece per digit


def _split(db: str, probabilities_of: Callable | None = None) -> Split:
    rows = feedback_rows(db)
    split = Split(
        train=_digit_rows([row for row in rows if not held_out(row.png_sha256)]),
        holdout=_digit_rows([row for row in rows if held_out(row.png_sha256)]),
    )
    for row in read_number_rows(db):
        pieces = number_digits(row.png, row.number, probabilities_of)
        if pieces is None:
            split.skipped += 1
            continue
        split.numbers += 1
        (split.holdout if held_out(row.png_sha256) else split.train).extend(pieces)
    return split


def _as_tensors(found: list[tuple[np.ndarray, int]]):
    images = [image for image, _ in found]
    x = torch.from_numpy(np.stack(images)) if images else torch.zeros((0, 28, 28), dtype=torch.uint8)
    return x, torch.tensor([label for _, label in found], dtype=torch.int64)


def feedback_split(db: str, probabilities_of: Callable | None = None):
    """((train images, labels), (hold-out images, labels)): uint8 N x 28 x 28 and int64 N tensors; the
    digits of the number feedback after those of the digit feedback."""
    split = _split(db, probabilities_of)
    return _as_tensors(split.train), _as_tensors(split.holdout)


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
    split = _split(db)
    (x, y), holdout_x = _as_tensors(split.train), split.holdout
    copies = copies_of(len(x), copies, max_images)
    print(
        f"feedback from {masked(db)}: training on {len(x)} drawings x {copies}, "
        f"{len(holdout_x)} held out for evaluation; numbers: {split.numbers} cut into digits, "
        f"{split.skipped} skipped (not one piece per digit)"
    )
    return x.repeat(copies, 1, 1), y.repeat(copies)


def copies_of(drawings: int, copies: int, max_images: int) -> int:
    """copies, fewer once drawings x copies would pass max_images, and never none."""
    return max(1, min(copies, max_images // max(1, drawings)))
