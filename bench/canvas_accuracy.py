"""How well the app reads real drawings: real pen digits of writers never trained on, drawn the way a
browser canvas draws them, sent as data URLs through the real web app's /predict.

    python -m bench.canvas_accuracy                    # own stack serving build/convnet, all held-out digits
    python -m bench.canvas_accuracy --url http://127.0.0.1:5500 --limit 500
    python -m bench.canvas_accuracy --in-process build/convnet/model.pt --writers trainable   # for tuning
    python -m bench.canvas_accuracy --mnist            # MNIST's 10,000 test digits drawn on canvases instead
    python -m bench.canvas_accuracy --writers later    # after scripts/pen_feedback.py's halves were trained on
    python -m bench.canvas_accuracy --nondigits        # the held-out non-digit families (train/nondigits.py)
    python -m bench.canvas_accuracy --all              # pen writers 21-30, MNIST test and non-digits, one stack

Each digit of writers 21-30 (train/pendigits.py HELD_OUT_WRITERS: training only ever sees writers 1-20)
is laid out (train/canvases.py) on a 280x280 canvas with a random brush of 8-20 px, a height of 35-85% of the canvas and
a random position (fixed seed), rendered with round caps and joins, antialiased, black on white.
Prints accuracy overall and per digit, the worst confusions, and how honest the probabilities are:
mean top probability against accuracy, and the ECE of answers (15 bins; refused drawings counted apart).

--mnist draws MNIST's test digits on the canvas instead (train/mnist_canvas.py, the same renders that
training's test_canvas_accuracy scores in-process), to compare with the raw 28x28 test accuracy.

A drawing answered 422 "not_a_digit" is read as 10 (train/nondigits.NOT_A_DIGIT): wrong for a real digit
(counted as rejected), right for a non-digit. --nondigits sends the held-out non-digit families (fonts
and shape kinds never trained on) and prints the share of each answered "not a digit".

--in-process skips the servers: the same handler.mnist_form.preprocess on the same data URLs, then the
TorchScript model. It is for quick tuning (use --writers trainable: tuning on the held-out writers would
make the held-out figure meaningless) and prints preprocess() time per data URL; the figure to report
is the one through the real stack.
"""

import argparse
import collections
import math
import os
from pathlib import Path

import numpy as np

from bench.toolkit import DEFAULT_MODEL_DIR, web_app
from tests.clients import evaluate
from train.canvases import WRITERS, drawings, mnist_drawings, nondigit_drawings
from train.evaluation import Result, in_process, score
from train.nondigits import NOT_A_DIGIT


def evaluate_in_process(model_path: Path, items: list[tuple[int, bytes]]) -> list[Result]:
    """train/evaluation.py in_process, and its preprocess() time per data URL."""
    results, seconds = in_process(model_path, items)
    ms = np.array(seconds) * 1000
    print(
        f"preprocess() per 280x280 PNG data URL: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms"
    )
    return results


def report(results: list[Result], writers: str = "held-out") -> float:
    """Accuracy, refusals, per digit, confusions and calibration (train/evaluation.py score)."""
    names = {
        "held-out": "held-out pen digits (writers 21-30, never trained on)",
        "trainable": "trainable pen digits (writers 1-20, for tuning)",
        "later": "held-out pen digits, second half of each writer (writers 21-30)",
        "mnist": "MNIST test digits drawn on canvases",
    }[writers]
    s = score(results)
    print(f"{names}: {sum(s.right)}/{s.n} = {s.accuracy:.2%}")
    rejected = sum(s.rejected)
    guessed = sum(p is not None and max(range(10), key=p.__getitem__) == label for label, _, p in results)
    print(
        f"  answered 'not a digit': {rejected}/{s.n} = {rejected / s.n:.2%}; "
        f"the guess (rejected or not) right: {guessed / s.n:.2%}"
    )
    per_digit = (f"{d}: {r:.1%}" for d, r in s.per_digit.items() if not math.isnan(r))
    print("  per digit: " + "  ".join(per_digit))
    confusions = collections.Counter((label, read) for label, read, _ in results if label != read)
    print("  worst confusions (drawn -> read, count):")
    for (label, read), count in confusions.most_common(8):
        print(f"    {label} -> {'error' if read is None else read}: {count}")
    # Refused drawings ("no digit drawn", "not a digit") are left out of the ECE and counted: the figure
    # `make evaluate` reports (train/calibration.py answered_calibration_error).
    top = np.array([max(p) for _, read, p in results if read not in (None, NOT_A_DIGIT)])
    print(
        f"  calibration: mean top probability {top.mean():.2%}, ECE of answers (15 bins) {s.ece:.2%}, "
        f"{s.refused} refused; {(top < 0.8).mean():.2%} of answers below 80% (the page's 'not sure')"
    )
    return s.accuracy


def report_nondigits(results: list[Result]) -> float:
    """Per held-out family, the share answered "not a digit" (the label is the family's name here)."""
    families = collections.defaultdict(lambda: [0, 0])
    for family, read, _ in results:
        families[family][0] += read == NOT_A_DIGIT
        families[family][1] += 1
    total = sum(r for r, _ in families.values())
    print(
        f"held-out non-digit families: {total}/{len(results)} = {total / len(results):.2%} answered 'not a digit'"
    )
    for family, (r, n) in sorted(families.items()):
        print(f"  {family}: {r}/{n} = {r / n:.2%}")
    return total / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running web app (default: start a stack of its own)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--in-process", type=Path, metavar="MODEL_PT", help="no servers: preprocess + model")
    parser.add_argument("--writers", choices=sorted(WRITERS), default="held-out")
    parser.add_argument("--mnist", action="store_true", help="MNIST's test digits drawn on canvases instead")
    parser.add_argument("--mnist-dir", default=os.environ.get("MNIST_DIR", "data"))
    parser.add_argument("--limit", type=int, help="a random sample of this many digits (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stray-tap", action="store_true", help="add one tap of the brush clear of each digit"
    )
    parser.add_argument("--nondigits", action="store_true", help="the held-out non-digit families instead")
    parser.add_argument("--all", action="store_true", help="pen writers 21-30, MNIST test, non-digits")
    args = parser.parse_args()
    if args.all:
        return run_all(args)
    if args.nondigits:
        items = nondigit_drawings()
        if args.in_process:
            report_nondigits(evaluate_in_process(args.in_process, items))
            return
        with web_app(args.url, args.model_dir) as url:
            report_nondigits(evaluate(url, items))
        return
    if args.mnist:
        items, args.writers = mnist_drawings(args.mnist_dir, args.limit, args.seed), "mnist"
    else:
        items = drawings(args.limit, args.seed, args.writers, args.stray_tap)
    if args.stray_tap:
        print("each digit with one stray tap of the brush, clear of the digit")
    if args.in_process:
        report(evaluate_in_process(args.in_process, items), args.writers)
        return
    with web_app(args.url, args.model_dir) as url:
        report(evaluate(url, items), args.writers)


def run_all(args) -> None:
    """The three figures of docs/not-a-digit.md through one stack."""
    with web_app(args.url, args.model_dir) as url:
        report(evaluate(url, drawings(args.limit, args.seed)), "held-out")
        report(evaluate(url, mnist_drawings(args.mnist_dir, args.limit, args.seed)), "mnist")
        report_nondigits(evaluate(url, nondigit_drawings()))


if __name__ == "__main__":
    main()
