"""New writers correct the page: the first half of each held-out pen writer's digits (21-30) stored as
feedback, so training on it can be measured on the other half (how much the page's corrections teach).

    python -m scripts.pen_feedback --db build/pen-feedback.sqlite3 [--model build/convnet/model.pt]
    make train FEEDBACK_DB=build/pen-feedback.sqlite3 MODEL_DIR=build/convnet-pen-feedback
    python -m bench.canvas_accuracy --writers later --model-dir build/convnet-pen-feedback

Each digit is drawn as the page draws it (train/pendigits.py, a layout of its own) and stored through the
web app's own store and feedback code (web/feedback.py drawing_and_input), with the label its writer
meant and the digit --model read (what the page would have shown them before they corrected it).
"""

import argparse
import asyncio
import hashlib
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from train import pendigits
from train.feedback_data import data_url
from web.feedback import drawing_and_input
from web.feedback_store import FeedbackStore

warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
LAYOUT_SEED = 1  # not bench/canvas_accuracy.py's 0: other drawings than the ones measured


async def store_earlier_halves(db: str, model_path: Path) -> int:
    model = torch.jit.load(str(model_path)).eval()
    rng = random.Random(LAYOUT_SEED)
    store = FeedbackStore(db)
    try:
        digits = pendigits.earlier(pendigits.load())
        for digit in digits:
            sent = pendigits.png_bytes(pendigits.render(pendigits.layout(digit, rng)))
            png, seen = drawing_and_input(data_url(sent))
            with torch.no_grad():
                image = torch.from_numpy(
                    np.frombuffer(seen, np.uint8).reshape(1, 1, 28, 28).astype(np.float32) / 255
                )
                predicted = int(model(image).argmax())
            # Straight into the store, as the operator writing the database: no ticket (that guards
            # /api/feedback against strangers); ticket_id stays NULL, which UNIQUE allows any number of.
            # The hash of the drawing as sent, as the page's feedback stores it: the same hold-out.
            sha256 = hashlib.sha256(sent).hexdigest()
            values = {"label": digit.label, "predicted": predicted, "input_28x28": seen, "png_sha256": sha256}
            await store.add(version="1.0", png=png, **values)
        return len(digits)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, help="a new SQLite file (or database URL) to store them in")
    parser.add_argument("--model", type=Path, default=Path("build/convnet/model.pt"))
    args = parser.parse_args()
    if "://" not in args.db and Path(args.db).exists():
        raise SystemExit(f"error: {args.db} exists; give a new file, so no other feedback is mixed in")
    count = asyncio.run(store_earlier_halves(args.db, args.model))
    print(f"stored {count} drawings of writers 21-30 (the first half of each) in {args.db}")


if __name__ == "__main__":
    main()
