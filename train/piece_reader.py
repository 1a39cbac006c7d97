"""The piece reader: /read's second opinion on the pieces it cuts out of a number (docs/reading.md).

The digit reader (model.pt) is trained on whole digits and non-digits, never on pieces of numbers
(NUMBERS=0: they cost it pen digits and training time, docs/training.md). So a piece holding a digit and
its neighbour's edge, or half of two touching digits, reads to it as surely as a digit, and the cutter's
choice among cuts guesses. The piece reader is a small network (ARCH lenet, 44k parameters: 3% of the
digit reader's FLOPs, a fifth of its time on 4 pieces) trained on those pieces (train/number_pieces.py:
numbers of the training writers' digits cut by handler/segment.py, each piece labelled its digit or "not
one digit", 10) and on the same writers' digits drawn alone, and saved beside model.pt as pieces.pt.
Serving weighs each piece's digit probabilities with its own (handler/answers.py with_pieces); /predict
never runs it.

    python -m train.piece_reader build/convnet   # pieces.pt for a model trained before it (TUNE=1 as train.py)

`make train` trains it after the digit reader (PIECES numbers; 0: none).
"""

import json
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from handler.answers import PIECE_READER_FILE
from model import build_model
from train import shipped
from train.number_pieces import number_piece_set
from train.pen_data import pen_training_set

# TorchScript is deprecated upstream and torch.jit.script says so; we use it knowingly (as train.py).
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

ARCH = "lenet"
COUNT = 4000  # numbers whose pieces it learns (train.py's PIECES)
EPOCHS = 3
BATCH_SIZE = 256
LR = 4e-3  # peak of AdamW's one-cycle schedule


def train_piece_reader(
    out_dir: Path, count: int, copies: int, tune: bool, seed: int, pen_path: Path, cache_dir: Path
) -> dict:
    """Trains the piece reader on the pieces of `count` numbers and on the training writers' digits drawn
    alone (`copies` renders each, train/pen_data.py: what /read's candidate of a whole drawing is); tune:
    without writers 17-20, as train.py's TUNE=1. Saves it as out_dir/pieces.pt (TorchScript, [0, 1] ink
    in, 11 logits out) and returns what metrics.json records of it."""
    started = time.time()
    images, labels = number_piece_set(pen_path, count, tune, cache_dir)
    alone = pen_training_set(pen_path, copies, tune, cache_dir=cache_dir)
    if alone is not None:  # without them, wide digits drawn alone read "not one digit" (docs/reading.md)
        images, labels = torch.cat([images, alone[0]]), torch.cat([labels, alone[1]])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_model(ARCH, 11)
    optimizer = torch.optim.AdamW(net.parameters(), LR, weight_decay=1e-4)  # OneCycleLR sets the rate
    steps = max(1, int(EPOCHS * len(images) / BATCH_SIZE))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps)
    net.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (BATCH_SIZE,), generator=generator)
        loss = F.cross_entropy(net(images[index].unsqueeze(1).float() / 255), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.jit.script(net.eval()).save(str(out_dir / PIECE_READER_FILE))
    seconds = round(time.time() - started, 1)
    print(
        f"piece reader: {len(images)} images ({count} numbers' pieces, digits alone), {steps} steps, {seconds} s"
    )
    return {"numbers": count, "images": len(images), "steps": steps, "seconds": seconds, "arch": ARCH}


def beside(model_pt: Path) -> Path | None:
    """The piece reader saved beside this model.pt, as the archive takes it (Makefile); None without one."""
    path = Path(model_pt).parent / PIECE_READER_FILE
    return path if path.exists() else None


def main():
    """pieces.pt for the model directory named (its metrics.json then says piece_reader); TUNE, SEED,
    PIECES, PEN_COPIES, PEN_DIGITS and CACHE_DIR are train.py's knobs, read as it reads them."""
    from train import train as recipe  # its knobs, defaults and CONFIG_FROM; it imports this module

    out_dir = Path(sys.argv[1])
    if refused := shipped.refusal(str(out_dir)):
        sys.exit(refused)
    found = train_piece_reader(
        out_dir,
        recipe.PIECES,
        recipe.PEN_COPIES,
        recipe.TUNE == 1,
        recipe.SEED,
        Path(recipe.PEN_DIGITS),
        Path(recipe.CACHE_DIR),
    )
    metrics_file = out_dir / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        metrics["piece_reader"] = found
        metrics_file.write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
