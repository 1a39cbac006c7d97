"""`make feedback-export`: the feedback database as a plain dataset any tool can read.

    python -m scripts.feedback_export [--db data/feedback.sqlite3] [--out build/feedback-export]

OUT/images/<id>.png     the drawing as a row keeps it: its ink, dark on white, grayscale (web/feedback.py
                        stored_drawing; rows from before that: the bytes the page sent to /predict)
OUT/inputs/<id>.png     the 28x28 the model saw then (white ink on black, as MNIST)
OUT/labels.csv          file,label,predicted,version,created_utc,split,png_sha256  (split: train | holdout,
                        the same split training uses: train/feedback_data.py; png_sha256 is of the
                        drawing as sent)
"""

import argparse
import csv
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from train.feedback_data import feedback_rows, held_out, masked
from web.feedback_store import DEFAULT_DB

FIELDS = ["file", "label", "predicted", "version", "created_utc", "split", "png_sha256"]


def export(db: str, out: Path) -> int:
    rows = feedback_rows(db)
    if out.exists() and any(out.iterdir()) and not (out / "labels.csv").exists():
        raise SystemExit(f"error: {out} holds other files; give an empty or new directory (--out)")
    staging = out.with_name(out.name + ".partial")  # a reader never sees half an export
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    (staging / "inputs").mkdir()
    with open(staging / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for row in rows:
            name = f"{row.id:07d}.png"
            (staging / "images" / name).write_bytes(row.png)
            seen = np.frombuffer(row.input_28x28, dtype=np.uint8).reshape(28, 28)
            Image.fromarray(seen).save(staging / "inputs" / name)
            writer.writerow(
                {
                    "file": f"images/{name}",
                    "label": row.label,
                    "predicted": row.predicted,
                    "version": row.version,
                    "created_utc": row.created_utc.isoformat(timespec="seconds") + "Z",
                    "split": "holdout" if held_out(row.png_sha256) else "train",
                    "png_sha256": row.png_sha256,
                }
            )
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("FEEDBACK_DB", DEFAULT_DB))
    parser.add_argument("--out", type=Path, default=Path("build/feedback-export"))
    args = parser.parse_args()
    count = export(args.db, args.out)
    print(f"wrote {count} drawings from {masked(args.db)} to {args.out}/ (images/, inputs/, labels.csv)")


if __name__ == "__main__":
    main()
