"""Does the preprocessing (handler/mnist_form.py and what it uses) still give the 28x28 images an older version gave? Prints, per set of
drawings, the largest difference and how many images differ, and every changed decision (a digit
now refused, a refusal now a digit, a different error).

    python -m bench.preprocess_equivalence                  # this tree against main, all sets
    python -m bench.preprocess_equivalence --against HEAD~1 --limit 500

Sets (fixed seeds), each drawing sent as the data URL a client would send:
  pen        all 7,494 pen digits (train/pendigits.py, writers 1-30) laid out and rendered as
             bench/canvas_accuracy.py does: black on white, greyscale PNG;
  pen+tap    the same digits with one stray tap of the brush clear of the digit
             (canvas_accuracy --stray-tap), encoded as a canvas.toDataURL() (RGBA PNG: bench/canvas_body.py);
  pen-clear  the first 1,000 drawn on a transparent canvas (RGBA, ink in the alpha channel);
  mnist      2,000 MNIST test digits drawn on 280x280 canvases (train/canvases.py mnist_on_canvas).
Exit status 1 when a decision changed or an image differs by more than --tolerance.
"""

import argparse
import base64
import importlib.util
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.canvas_body import canvas_png
from handler import decode, errors, ink, mnist_form
from tests.stack import ROOT
from train import pendigits
from train.canvases import with_stray_tap


def pipeline(decode, errors, ink, mnist_form) -> SimpleNamespace:
    """The preprocessing's modules as one, by the names handler/preprocess.py held them in before the
    split: what outcome() and compare() use, for a revision of either layout."""
    return SimpleNamespace(preprocess=mnist_form.preprocess, InputError=errors.InputError)


new = pipeline(decode, errors, ink, mnist_form)


def preprocess_at(rev: str):
    """The preprocessing as it is at git revision `rev`, imported as modules of its own: handler/preprocess.py
    where `rev` has it, else its handler/ package (relative imports) under another name."""

    def show(path: str) -> bytes:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True
        ).stdout

    listing = ["git", "ls-tree", "--name-only", f"{rev}:handler"]
    files = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True, text=True).stdout.split()
    tag = re.sub(r"\W", "_", rev)
    with tempfile.TemporaryDirectory(prefix="preprocess-") as folder:
        if "preprocess.py" in files:
            path = Path(folder) / f"preprocess_{tag}.py"
            path.write_bytes(show("handler/preprocess.py"))
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        package = Path(folder) / f"handler_{tag}"
        package.mkdir()
        for name in (f for f in files if f.endswith(".py")):
            (package / name).write_bytes(show(f"handler/{name}"))
        sys.path.insert(0, folder)
        try:
            names = ("decode", "errors", "ink", "mnist_form")
            return pipeline(*(importlib.import_module(f"{package.name}.{name}") for name in names))
        finally:
            sys.path.remove(folder)


def pen_sets(limit: int | None) -> dict[str, list[bytes]]:
    digits = pendigits.load()[:limit]
    rng, tap_rng = random.Random(0), random.Random(1)
    sets = {"pen": [], "pen+tap": [], "pen-clear": []}
    for i, digit in enumerate(digits):
        drawing = pendigits.layout(digit, rng)
        sets["pen"].append(pendigits.png_bytes(pendigits.render(drawing)))
        sets["pen+tap"].append(canvas_png(pendigits.render(with_stray_tap(drawing, tap_rng))))
        if i < 1000:
            sets["pen-clear"].append(pendigits.png_bytes(pendigits.render(drawing, transparent=True)))
    return sets


def mnist_set(count: int) -> list[bytes]:
    import torchvision

    from tests.models import MNIST_DIR
    from train.canvases import mnist_on_canvas as as_canvas

    mnist = torchvision.datasets.MNIST(MNIST_DIR, train=False, download=True)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(mnist), size=count, replace=False)
    return [as_canvas(mnist.data[int(i)].numpy(), rng) for i in picks]


def outcome(module, body: bytes):
    """The 28x28 image, or (status, error class name) for a refusal."""
    try:
        return module.preprocess(body)
    except module.InputError as error:
        return error.status, type(error).__name__


def compare(old, pngs: list[bytes]) -> dict:
    diffs, means, changed, refused, seconds = [], [], [], 0, {"old": 0.0, "new": 0.0}
    for index, png in enumerate(pngs):
        body = b"data:image/png;base64," + base64.b64encode(png)
        results = {}
        for name, module in (("old", old), ("new", new)):
            start = time.perf_counter()
            results[name] = outcome(module, body)
            seconds[name] += time.perf_counter() - start
        a, b = results["old"], results["new"]
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            diffs.append(float(np.abs(a - b).max()))
            means.append(float(np.abs(a - b).mean()))
        elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray) or a != b:
            changed.append(
                (index, a if isinstance(a, tuple) else "image", b if isinstance(b, tuple) else "image")
            )
        else:
            refused += 1
    return {
        "diffs": np.array(diffs),
        "mean": float(np.mean(means)) if means else 0.0,
        "changed": changed,
        "refused": refused,
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", default="main", help="git revision of the old preprocessing")
    parser.add_argument("--limit", type=int, help="only the first N pen digits (default: all 7,494)")
    parser.add_argument("--mnist", type=int, default=2000, help="MNIST canvases (0: none)")
    parser.add_argument("--tolerance", type=float, default=1 / 255, help="largest accepted difference")
    args = parser.parse_args()
    old = preprocess_at(args.against)
    sets = pen_sets(args.limit)
    if args.mnist:
        sets["mnist"] = mnist_set(args.mnist)
    print(f"this tree against {args.against}; differences in ink intensity (0..1), 1/255 = {1 / 255:.4f}")
    print(
        f"{'set':<10}{'images':>7}{'refused':>8}{'max diff':>10}{'mean':>8}{'> 1/255':>8}{'> 0':>6}"
        f"{'decisions changed':>18}{'ms old':>8}{'ms new':>8}"
    )
    bad = False
    for name, pngs in sets.items():
        r = compare(old, pngs)
        diffs, changed = r["diffs"], r["changed"]
        worst = diffs.max() if len(diffs) else 0.0
        ms = {k: v * 1000 / len(pngs) for k, v in r["seconds"].items()}
        print(
            f"{name:<10}{len(pngs):>7}{r['refused']:>8}{worst:10.4f}{r['mean']:8.4f}"
            f"{int((diffs > 1 / 255 + 1e-6).sum()):>8}"
            f"{int((diffs > 0).sum()):>6}{len(changed):>18}{ms['old']:8.3f}{ms['new']:8.3f}"
        )
        for index, was, now in changed:
            print(f"    {name} #{index}: {was} -> {now}")
        bad |= bool(changed) or worst > args.tolerance + 1e-6
    print("max diff: the largest pixel difference of any image; mean: per pixel, over all images")
    print("ms old/new: preprocess() per image, alternating (a noisy machine: compare the two, not runs)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
