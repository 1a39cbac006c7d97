"""Stored feedback as data: the deterministic hold-out, training on the rest (train.train and `make train
FEEDBACK_DB=...`), and `make feedback-export`. The database is a real SQLite file written by the web app's
own store, with drawings of trainable pen-digit writers (1-20) as the page would send them."""

import asyncio
import csv
import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from handler.answers import choose
from handler.mnist_form import preprocess
from handler.segment import read_candidates
from tests.models import MNIST_DIR, MNIST_SUBSET
from tests.stack import ROOT
from train import feedback_data, nondigits, numbers, pendigits
from train.feedback_data import data_url, feedback_split, held_out, holdout_drawings
from web.feedback import drawing_and_input
from web.feedback_store import FeedbackStore, read_rows

ROWS = 60


def pen_pngs(count: int, seed: int) -> list[tuple[bytes, int]]:
    rng = random.Random(seed)
    digits = rng.sample(pendigits.trainable(pendigits.load()), count)
    return [(pendigits.png_bytes(pendigits.render(pendigits.layout(d, rng))), d.label) for d in digits]


def fill(db, drawings) -> None:
    async def write():
        store = FeedbackStore(str(db))
        for png, label in drawings:
            png, seen = drawing_and_input(data_url(png))
            await store.add(version="1.0", label=label, predicted=(label + 1) % 10, png=png, input_28x28=seen)
        await store.close()

    asyncio.run(write())


def as_28x28(png: bytes) -> np.ndarray:
    return (preprocess(png) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"
    fill(path, pen_pngs(ROWS, seed=0))
    return path


def test_the_split_is_deterministic_and_the_hold_out_is_a_fixed_part(db):
    (train_x, train_y), (hold_x, hold_y) = feedback_split(str(db))
    rows = read_rows(str(db))
    assert train_x.dtype == hold_x.dtype == torch.uint8 and train_y.dtype == hold_y.dtype == torch.int64
    assert train_x.shape[1:] == hold_x.shape[1:] == (28, 28)
    assert len(train_x) + len(hold_x) == ROWS
    # About a fifth held out (binomial, 60 rows: 4-22 covers it all but once in ten thousand runs).
    assert 4 <= len(hold_x) <= 22
    expected_hold = [r for r in rows if held_out(r.png_sha256)]
    assert hold_y.tolist() == [r.label for r in expected_hold]
    assert [r.label for r in rows if not held_out(r.png_sha256)] == train_y.tolist()
    # Each image is the drawing through the serving preprocessing, as the model will be fed it.
    assert np.array_equal(hold_x.numpy(), np.stack([as_28x28(r.png) for r in expected_hold]))
    # Same answer on every call; and for evaluation through TorchServe, the very PNGs of the hold-out.
    (again_x, _), (again_hold, _) = feedback_split(str(db))
    assert torch.equal(again_x, train_x) and torch.equal(again_hold, hold_x)
    assert holdout_drawings(str(db)) == [(r.png, r.label) for r in expected_hold]


def test_rows_never_change_sides_as_feedback_grows(tmp_path, db):
    grown = tmp_path / "grown.sqlite3"
    grown.write_bytes(db.read_bytes())
    before = {png for png, _ in holdout_drawings(str(grown))}
    extra = pen_pngs(20, seed=1)
    held_png = next(iter(before))
    fill(grown, [*extra, (held_png, 0)])  # the same drawing sent again (another label)
    after = [png for png, _ in holdout_drawings(str(grown))]
    assert before <= set(after)  # every held-out drawing is still held out
    assert after.count(held_png) == 2  # and its copy went with it: no copy of the hold-out in training
    assert len(read_rows(str(grown))) == ROWS + 21


def test_training_adds_the_training_part_and_never_the_hold_out(db, monkeypatch):
    from train import train

    (train_x, train_y), (hold_x, _) = feedback_split(str(db))
    n = len(train_x)
    monkeypatch.setattr(train, "FEEDBACK_DB", str(db))
    monkeypatch.setattr(train, "FEEDBACK_COPIES", 3)
    monkeypatch.setattr(train, "FEEDBACK_IMAGES", 2 * n + 1)  # the cap: 2 copies, not 3
    monkeypatch.setattr(train, "MNIST_DIR", str(MNIST_DIR))
    monkeypatch.setattr(
        train, "pen_training_set", lambda *args, **kwargs: None
    )  # MNIST + feedback only: quick
    # The tests' subset (tests/models.py): its renders are cached already in a test session.
    monkeypatch.setattr(train, "MNIST_SUBSET", int(MNIST_SUBSET))
    monkeypatch.setattr(train, "UPSCALED", 0)
    fit_x, fit_y = train.load_mnist(torch.device("cpu"))["fit"]
    assert torch.equal(fit_x[-2 * n :], train_x.repeat(2, 1, 1)) and torch.equal(
        fit_y[-2 * n :], train_y.repeat(2)
    )
    assert not torch.equal(fit_x[-3 * n : -2 * n], train_x)  # and no third copy
    seen_in_training = {bytes(image) for image in fit_x.numpy().reshape(len(fit_x), -1)}
    assert not any(bytes(image) in seen_in_training for image in hold_x.numpy().reshape(len(hold_x), -1))


def test_feedback_copies_shrink_past_the_cap_and_never_to_none():
    copies = {
        n: feedback_data.copies_of(n, 16, 20_000) for n in (0, 100, 1_250, 1_251, 5_000, 20_000, 40_000)
    }
    assert copies == {0: 16, 100: 16, 1_250: 16, 1_251: 15, 5_000: 4, 20_000: 1, 40_000: 1}


@pytest.mark.train
def test_make_train_with_feedback_db(db, tmp_path):
    (train_x, _), (hold_x, _) = feedback_split(str(db))
    out = tmp_path / "model"
    result = subprocess.run(
        ["make", "-s", "train", f"FEEDBACK_DB={db}", f"MODEL_DIR={out}", "ARCH=lenet", "MAX_STEPS=20"],
        cwd=ROOT,
        env={
            **os.environ,
            "PEN_COPIES": "0",
            "MNIST_DIR": str(MNIST_DIR),
            "MNIST_SUBSET": MNIST_SUBSET,
            "UPSCALED": "0",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = f"training on {len(train_x)} drawings x 16, {len(hold_x)} held out"  # FEEDBACK_COPIES' default
    assert line in result.stdout, result.stdout[-3000:]
    assert (out / "model.pt").is_file()


def test_make_feedback_export_writes_pngs_and_a_labels_csv(db, tmp_path):
    out = tmp_path / "export"
    for _ in range(2):  # a second export replaces the first
        subprocess.run(
            ["make", "-s", "feedback-export", f"FEEDBACK_DB={db}", f"FEEDBACK_EXPORT={out}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    rows = {row.id: row for row in read_rows(str(db))}
    with open(out / "labels.csv", newline="") as f:
        listed = list(csv.DictReader(f))
    assert len(listed) == len(rows) == ROWS
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i:07d}.png" for i in rows)
    for entry in listed:
        row = rows[int(entry["file"].removeprefix("images/").removesuffix(".png"))]
        assert (out / entry["file"]).read_bytes() == row.png
        assert (int(entry["label"]), int(entry["predicted"]), entry["version"]) == (
            row.label,
            row.predicted,
            "1.0",
        )
        assert entry["split"] == ("holdout" if held_out(row.png_sha256) else "train")
        seen = np.asarray(Image.open(out / "inputs" / entry["file"].removeprefix("images/")))
        assert seen.tobytes() == row.input_28x28
    # A directory of other files is never overwritten.
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    refused = subprocess.run(
        ["make", "-s", "feedback-export", f"FEEDBACK_DB={db}", f"FEEDBACK_EXPORT={other}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and (other / "keep.txt").read_text() == "mine"


def test_a_missing_database_is_an_error_not_an_empty_set(tmp_path):
    with pytest.raises(FileNotFoundError):
        feedback_split(str(tmp_path / "nowhere.sqlite3"))
    assert not (tmp_path / "nowhere.sqlite3").exists()


def test_new_writers_halves_split_each_held_out_writer_and_meet_nowhere():
    digits = pendigits.load()
    earlier, later = pendigits.earlier(digits), pendigits.later(digits)
    held = pendigits.held_out(digits)
    assert sorted(map(id, earlier + later)) == sorted(map(id, held))  # every held-out digit, once
    for writer in pendigits.HELD_OUT_WRITERS:
        mine = [d for d in held if d.writer == writer]
        first = [d for d in earlier if d.writer == writer]
        assert first == mine[: len(mine) // 2]  # the first half, in the file's order
        assert [d for d in later if d.writer == writer] == mine[len(mine) // 2 :]


def test_pen_feedback_stores_the_earlier_halves_as_the_page_would(model_dir, tmp_path):
    db = tmp_path / "pen-feedback.sqlite3"
    command = [
        sys.executable,
        "-m",
        "scripts.pen_feedback",
        "--db",
        str(db),
        "--model",
        str(model_dir / "model.pt"),
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    rows = read_rows(str(db))
    earlier = pendigits.earlier(pendigits.load())
    assert [r.label for r in rows] == [d.label for d in earlier]
    # Each row is what the page's feedback stores: the PNG, and the 28x28 the serving code makes of it.
    sample = rows[:: len(rows) // 20]
    assert all(r.input_28x28 == as_28x28(r.png).tobytes() for r in sample)
    # `predicted` is the model's reading of that 28x28, as the page showed it before the correction.
    model = torch.jit.load(str(model_dir / "model.pt")).eval()
    seen = np.stack([np.frombuffer(r.input_28x28, np.uint8).reshape(28, 28) for r in sample])
    with torch.no_grad():
        read = model(torch.from_numpy(seen).unsqueeze(1).float() / 255).argmax(1).tolist()
    assert [r.predicted for r in sample] == read
    # A second run on the same file is refused: no other feedback is mixed in, nothing is added.
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "exists" in again.stderr
    assert len(read_rows(str(db))) == len(rows)


def test_confirmed_non_digits_train_as_negatives_and_corrected_rejections_as_digits(tmp_path):
    """Feedback on drawings answered "not a digit" (predicted 10): "right, not a digit" rows are label 10,
    negatives for the 11th output; "it is a digit: d" rows are digit d; the hold-out keeps its share."""
    letters = [
        (pendigits.png_bytes(pendigits.render(nondigits.letter(c, seed=i))), 10)
        for i, c in enumerate("AEFHKMNRWXY")
    ]
    digits = pen_pngs(11, seed=5)
    db = tmp_path / "feedback.sqlite3"

    async def write():
        store = FeedbackStore(str(db))
        for png, label in letters + digits:
            png, seen = drawing_and_input(data_url(png))
            await store.add(version="1.0", label=label, predicted=10, png=png, input_28x28=seen)
        await store.close()

    asyncio.run(write())
    (train_x, train_y), (hold_x, hold_y) = feedback_split(str(db))
    assert len(train_x) + len(hold_x) == 22
    labels = sorted(train_y.tolist() + hold_y.tolist())
    assert labels == sorted([10] * 11 + [label for _, label in digits])
    # Each row's image is the serving preprocessing of its drawing, with its own label.
    for png, label in letters + digits:
        image = torch.from_numpy(as_28x28(png))
        found = [
            y
            for x, y in zip(torch.cat([train_x, hold_x]), torch.cat([train_y, hold_y]), strict=True)
            if torch.equal(x, image)
        ]
        assert found == [label]


def number_pngs(labels: list[str], spacing: str, seed: int) -> list[tuple[bytes, str]]:
    """Numbers written with one trainable writer's digits (train/numbers.py) on the page's 560x280 canvas."""
    rng = random.Random(seed)
    digits = pendigits.trainable(pendigits.load())
    found = []
    for label in labels:
        writer = rng.choice(sorted({d.writer for d in digits}))
        chosen = [rng.choice([d for d in digits if d.writer == writer and d.label == int(c)]) for c in label]
        png, composed, _ = numbers.compose(chosen, rng, (560, 280), spacing)
        found.append((png, composed))
    return found


def fill_numbers(db, drawings) -> None:
    async def write():
        store = FeedbackStore(str(db))
        for png, number in drawings:
            await store.add_number(version="1.0", number=number, predicted=None, png=png)
        await store.close()

    asyncio.run(write())


def cut(png: bytes) -> list[np.ndarray]:
    """The drawing's pieces as /read cuts it when every piece scores alike: each group of ink whole (and a
    narrow number not read as one digit, as feedback_data.number_digits has it without a model)."""
    candidates = read_candidates(png)
    candidates.one = None
    digits = choose(candidates, np.full((len(candidates.images), 10), 0.1, np.float32))
    return [(candidates.images[d.index] * 255).round().astype(np.uint8) for d in digits]


def test_numbers_become_training_digits_one_per_piece_and_the_rest_are_counted(tmp_path, capsys):
    """Numbers written apart: each piece's 28x28 (as /read cuts it) with its digit, on the side the drawing's
    hash puts it. A number meant with more or fewer digits than the drawing has pieces is skipped, and
    counted; "not_a_digit" on a drawing of one piece is a training negative."""
    db = tmp_path / "feedback.sqlite3"
    written = number_pngs(["42", "2026", "907", "13", "5", "6718"], "apart", seed=1)
    miscounted = [(written[0][0], "421"), (written[1][0], "26")]  # typed with a digit too many / too few
    letter = (pendigits.png_bytes(pendigits.render(nondigits.letter("X", seed=1))), "not_a_digit")
    fill(db, pen_pngs(3, seed=2))  # digit feedback beside them
    fill_numbers(db, [*written, *miscounted, letter])
    (train_x, train_y), (hold_x, hold_y) = feedback_split(str(db))
    digit_rows = read_rows(str(db))
    assert len(train_x) + len(hold_x) == 3 + sum(len(number) for _, number in written) + 1
    # Each number's pieces, in order, with its digits; after the digit rows of the same side.
    expected = {False: [], True: []}
    for png, number in [*written, letter]:
        labels = [10] if number == "not_a_digit" else [int(c) for c in number]
        pieces = cut(png)
        assert len(pieces) == len(labels), number  # written apart: one piece of ink per digit
        held = held_out(hashlib.sha256(png).hexdigest())
        expected[held] += list(zip(pieces, labels, strict=True))
    for (x, y), held in (((train_x, train_y), False), ((hold_x, hold_y), True)):
        rows = [r for r in digit_rows if held_out(r.png_sha256) == held]
        assert y.tolist() == [r.label for r in rows] + [label for _, label in expected[held]]
        assert np.array_equal(
            x.numpy()[len(rows) :].reshape(-1, 28, 28),
            np.array([p for p, _ in expected[held]]).reshape(-1, 28, 28),
        )
    # Training says how many numbers it cut and how many it skipped.
    feedback_data.feedback_training_set(str(db), copies=2, max_images=10_000)
    assert (
        f"numbers: {len(written) + 1} cut into digits, 2 skipped (not one piece per digit)"
        in capsys.readouterr().out
    )


def test_touching_digits_are_cut_where_the_model_says(model_dir):
    """Touching digits are one piece of ink: without a model every piece scores alike and the drawing stays
    one piece (skipped); with the model's probabilities (as /read gets them) it is cut into its digits."""
    model = torch.jit.load(str(model_dir / "model.pt")).eval()

    def probabilities_of(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(images).unsqueeze(1)), dim=1).numpy()

    labels = ["42", "38", "705", "61", "29", "843", "17", "56", "930", "24", "68", "351"]
    touching = number_pngs(labels, "touching", seed=3)
    alone = [feedback_data.number_digits(png, number) for png, number in touching]
    cut_by_model = [feedback_data.number_digits(png, number, probabilities_of) for png, number in touching]
    assert sum(pieces is None for pieces in alone) >= 10  # one group of ink each (12 of 12 here)
    # The quick test model cut 7-10 of 12 into their digits (seeds 3-6 of these numbers); a third is the bar.
    made = [pieces for pieces in cut_by_model if pieces is not None]
    assert len(made) >= 4, f"only {len(made)} of 12 touching numbers cut into their digits"
    for pieces, (_, number) in zip(cut_by_model, touching, strict=True):
        if pieces is not None:
            assert [label for _, label in pieces] == [int(c) for c in number]
            assert all(image.shape == (28, 28) and image.dtype == np.uint8 for image, _ in pieces)
