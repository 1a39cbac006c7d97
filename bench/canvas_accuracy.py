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
is laid out on a 280x280 canvas with a random brush of 8-20 px, a height of 35-85% of the canvas and
a random position (fixed seed), rendered with round caps and joins, antialiased, black on white.
Prints accuracy overall and per digit, the worst confusions, and how honest the probabilities are:
mean top probability against accuracy, and the expected calibration error (15 bins).

--mnist draws MNIST's test digits on the canvas instead (train/mnist_canvas.py, the same renders that
training's test_canvas_accuracy scores in-process), to compare with the raw 28x28 test accuracy.

A drawing answered 422 "not_a_digit" is read as 10 (train/nondigits.NOT_A_DIGIT): wrong for a real digit
(counted as rejected), right for a non-digit. --nondigits sends the held-out non-digit families (fonts
and shape kinds never trained on) and prints the share of each answered "not a digit".

--in-process skips the servers: the same handler.preprocess.preprocess on the same data URLs, then the
TorchScript model. It is for quick tuning (use --writers trainable: tuning on the held-out writers would
make the held-out figure meaningless) and prints preprocess() time per data URL; the figure to report
is the one through the real stack.
"""

import argparse
import base64
import collections
import contextlib
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.soak import Client
from train import mnist_canvas, nondigits, pendigits
from train.nondigits import NOT_A_DIGIT

# later: the held-out writers' second halves, after their first halves were trained on as feedback
# (scripts/pen_feedback.py).
WRITERS = {"held-out": pendigits.held_out, "trainable": pendigits.trainable, "later": pendigits.later}


def drawings(
    limit: int | None, seed: int, writers: str = "held-out", stray_tap: bool = False
) -> list[tuple[int, bytes]]:
    digits = WRITERS[writers](pendigits.load())
    if limit:
        digits = random.Random(seed).sample(digits, limit)
    rng, tap_rng = random.Random(seed), random.Random(seed + 1)  # the same layouts with or without taps
    items = []
    for digit in digits:
        drawing = pendigits.layout(digit, rng)
        if stray_tap:
            drawing = with_stray_tap(drawing, tap_rng)
        items.append((digit.label, data_url(pendigits.render(drawing))))
    return items


def data_url(canvas: Image.Image) -> bytes:
    """The canvas as the page sends it: a PNG data URL (canvas.toDataURL())."""
    return b"data:image/png;base64," + base64.b64encode(pendigits.png_bytes(canvas))


def mnist_on_canvas(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An MNIST digit drawn the way a person fills a 280x280 canvas: black on white, some size, somewhere."""
    side = int(rng.integers(120, 260))
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (280, 280), 0)
    canvas.paste(ink, tuple(int(v) for v in rng.integers(0, 280 - side + 1, size=2)))
    return pendigits.png_bytes(Image.eval(canvas, lambda v: 255 - v))


def mnist_drawings(mnist_dir: str, limit: int | None, seed: int) -> list[tuple[int, bytes]]:
    """MNIST test digits drawn on a 280x280 canvas as training's test_canvas figure draws them."""
    import torchvision

    test = torchvision.datasets.MNIST(mnist_dir, train=False)
    indices = (
        range(len(test.data))
        if not limit
        else sorted(random.Random(seed).sample(range(len(test.data)), limit))
    )
    items = []
    for i in indices:
        canvas = mnist_canvas.draw(test.data[i].numpy(), random.Random(mnist_canvas.render_seed("test", i)))
        items.append((int(test.targets[i]), data_url(canvas)))
    return items


def nondigit_drawings(copies: int = 4) -> list[tuple[str, bytes]]:
    """(family, data URL) of the held-out non-digit families, the drawings metrics.json measures."""
    return [(family, data_url(pendigits.render(d))) for family, d in nondigits.held_out_drawings(copies)]


def with_stray_tap(drawing: pendigits.Drawing, rng: random.Random) -> pendigits.Drawing:
    """The drawing plus one tap of the brush at a random spot at least two brush widths clear of the
    digit's extent, left or right or above or below it (unchanged if the digit leaves no such room)."""
    left, right, top, bottom = pendigits.extent(drawing.strokes)
    clear, low, high = 2 * drawing.brush, drawing.brush, pendigits.CANVAS - drawing.brush
    for _ in range(100):
        x, y = rng.uniform(low, high), rng.uniform(low, high)
        if x < left - clear or x > right + clear or y < top - clear or y > bottom + clear:
            return pendigits.Drawing(drawing.label, [*drawing.strokes, [(x, y)]], drawing.brush)
    return drawing


# label, digit read (None: refused as no digit; 10: answered "not a digit"), the guess's probabilities
Result = tuple[int, int | None, list[float] | None]


def read_of(status: int, answer: dict) -> int | None:
    if status == 422 and answer.get("reason") == "not_a_digit":
        return NOT_A_DIGIT
    return answer.get("digit") if status == 200 else None


def evaluate(url: str, items: list[tuple[int, bytes]], clients: int = 4) -> list[Result]:
    """(label, digit read or None for an error, probabilities) per drawing, through the web app at url."""

    def run(chunk):
        client = Client(url)
        return [
            (label, read_of(status, answer), answer.get("probabilities"))
            for label, (status, answer) in ((lbl, client.predict(b)) for lbl, b in chunk)
        ]

    chunks = [items[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return [pair for part in pool.map(run, chunks) for pair in part]


def evaluate_in_process(model_path: Path, items: list[tuple[int, bytes]]) -> list[Result]:
    """The same preprocess() and model without the servers; prints preprocess() time per data URL."""
    import warnings

    import numpy as np
    import torch

    # TorchScript is deprecated upstream and torch.jit.load says so; we use it knowingly.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)

    from handler.preprocess import InputError, preprocess

    torch.set_num_threads(1)
    model = torch.jit.load(str(model_path), map_location="cpu").eval()
    images, seconds = [], []
    for _, body in items:
        start = time.perf_counter()
        try:
            images.append(preprocess(body))
        except InputError:
            images.append(None)
        seconds.append(time.perf_counter() - start)
    good = [i for i, image in enumerate(images) if image is not None]
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack([images[i] for i in good])).unsqueeze(1)
        probabilities = dict(zip(good, torch.softmax(model(batch), 1).tolist(), strict=True))
    results = [(label, None, None) for label, _ in items]
    for i, p in probabilities.items():  # as handler/mnist_handler.py answers
        digits = [v / sum(p[:NOT_A_DIGIT]) for v in p[:NOT_A_DIGIT]]
        read = (
            NOT_A_DIGIT
            if len(p) > NOT_A_DIGIT and p[NOT_A_DIGIT] > 0.5
            else max(range(10), key=digits.__getitem__)
        )
        results[i] = (items[i][0], read, digits)
    ms = np.array(seconds) * 1000
    print(
        f"preprocess() per 280x280 PNG data URL: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms"
    )
    return results


def report(results: list[Result], writers: str = "held-out") -> float:
    right = sum(label == read for label, read, _ in results)
    names = {
        "held-out": "held-out pen digits (writers 21-30, never trained on)",
        "trainable": "trainable pen digits (writers 1-20, for tuning)",
        "later": "held-out pen digits, second half of each writer (writers 21-30)",
        "mnist": "MNIST test digits drawn on canvases",
    }[writers]
    print(f"{names}: {right}/{len(results)} = {right / len(results):.2%}")
    rejected = sum(read == NOT_A_DIGIT for _, read, _ in results)
    guessed = sum(p is not None and max(range(10), key=p.__getitem__) == label for label, _, p in results)
    print(
        f"  answered 'not a digit': {rejected}/{len(results)} = {rejected / len(results):.2%}; "
        f"the guess (rejected or not) right: {guessed / len(results):.2%}"
    )
    per_digit = collections.defaultdict(lambda: [0, 0])
    for label, read, _ in results:
        per_digit[label][0] += label == read
        per_digit[label][1] += 1
    print("  per digit: " + "  ".join(f"{d}: {r / n:.1%}" for d, (r, n) in sorted(per_digit.items())))
    confusions = collections.Counter((label, read) for label, read, _ in results if label != read)
    print("  worst confusions (drawn -> read, count):")
    for (label, read), count in confusions.most_common(8):
        print(f"    {label} -> {'error' if read is None else read}: {count}")
    calibration(results)
    return right / len(results)


def calibration(results: list[Result]) -> None:
    """Mean top probability against accuracy, and the ECE (15 bins; a refused drawing is a wrong answer
    given with probability 1, the most a refusal could claim)."""
    import torch

    from train.calibration import expected_calibration_error

    # A drawing answered "not a digit" still carries its guess: its probabilities are judged as a guess.
    probabilities = torch.tensor([p if p is not None else [1.0] + [0.0] * 9 for _, _, p in results])
    labels = torch.tensor([label if p is not None else -1 for label, _, p in results])
    top = probabilities.max(1).values
    print(
        f"  calibration: mean top probability {top.mean():.2%}, ECE (15 bins) "
        f"{expected_calibration_error(probabilities, labels):.2%}; {(top < 0.8).float().mean():.2%} of answers "
        "below 80% (the page's 'not sure')"
    )


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
    parser.add_argument("--model-dir", type=Path, default=Path("build/convnet"))
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
        with serving(args) as url:
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
    with serving(args) as url:
        report(evaluate(url, items), args.writers)


def run_all(args) -> None:
    """The three figures of docs/not-a-digit.md through one stack."""
    with serving(args) as url:
        report(evaluate(url, drawings(args.limit, args.seed)), "held-out")
        report(evaluate(url, mnist_drawings(args.mnist_dir, args.limit, args.seed)), "mnist")
        report_nondigits(evaluate(url, nondigit_drawings()))


@contextlib.contextmanager
def serving(args):
    """The web app at --url, or a stack of its own serving --model-dir."""
    if args.url:
        yield args.url
        return
    from tests.stack import Stack, archive

    work = Path(tempfile.mkdtemp(prefix="canvas-accuracy-"))
    archive(args.model_dir.resolve(), work / "model_store", "1.0")
    stack = Stack(work / "run", work / "model_store").start()
    try:
        yield stack.web_url
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
