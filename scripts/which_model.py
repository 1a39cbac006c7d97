"""What `make run` is about to serve, and how to serve a model of your own instead (the Makefile's run).

    python -m scripts.which_model MODEL_DIR --shipped model/default --arch convnet

The figure is the one the model's own metrics.json records (writers 21-30's pen digits, never trained
on); tests/test_default_model.py checks the shipped model still reads them so.
"""

import argparse
import json
from pathlib import Path


def describe(model_dir: Path, shipped: Path, arch: str) -> str:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    pen = metrics.get("pen_held_out_accuracy")
    figure = f", {pen:.2%} of held-out writers' pen digits read right" if pen is not None else ""
    if model_dir.resolve() == shipped.resolve():
        whose = f"the model shipped with the repository: {shipped}/README.md"
    else:
        whose = "yours"
    return (
        f"Serving {model_dir} ({metrics.get('arch', '?')}{figure}; {whose}).\n"
        f"A model of your own: `make train` (writes build/{arch}), then "
        f"`make stop && make run MODEL_DIR=build/{arch}`."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--shipped", type=Path, default=Path("model/default"))
    parser.add_argument("--arch", default="convnet")
    args = parser.parse_args()
    print(describe(args.model_dir, args.shipped, args.arch))


if __name__ == "__main__":
    main()
