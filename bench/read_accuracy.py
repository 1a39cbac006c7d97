"""How well the app reads whole numbers (issue 27): numbers of 2-6 digits, each of one writer's digits of
writers 21-30 (never trained on), written apart, close and touching on 560x280 and 280x280 canvases
with brushes of 8-20 px (train/numbers.py), sent to the web app's /read as the picture alone (a data URL)
and with the pen's strokes beside it, as the page sends them (JSON {"image", "strokes"}: pen digits keep
their points' order, train/numbers.py page_strokes gives them times); and single digits, the same
drawing to /read and to /predict.

    python -m bench.read_accuracy                         # own stack serving build/convnet
    python -m bench.read_accuracy --model-dir /work/models/x --per-class 1000
    python -m bench.read_accuracy --url http://127.0.0.1:5500
    python -m bench.read_accuracy --in-process build/convnet/model.pt   # no servers: read_number + model
    python -m bench.read_accuracy --send strokes          # only with strokes (default: both ways)

Prints, per way of sending, per spacing class and canvas, the share of numbers read exactly (the whole string) and what went
wrong with the others: too many pieces, too few (a digit count error: segmentation), a misread digit
(right count), a piece answered "not a digit", a refusal (422: its reason). Beside it, "alone": the
share of numbers whose every digit, drawn alone where it stands on the same canvas, is read right as a
single digit (/predict): what a perfect segmentation would read, so exact below alone is what the
segmentation costs and alone below the target is what reading the digits costs. Then single digits (every
held-out digit once per canvas, drawn as a number of one digit): accuracy through /predict and /read and
the difference in points. Seeded (--seed): the same drawings every run (make evaluate's EVAL_NUMBERS
are the first of them). The figure to report is the one through the real stack. To tune: --in-process
--writers tuning with a model trained with TUNE=1 (writers 17-20, which it never saw; choosing on 21-30
would spoil their figure), or --writers trainable for segmentation alone (writers 1-20, trained on).
"""

import argparse
import base64
import collections
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.toolkit import DEFAULT_MODEL_DIR, web_app
from tests.stack import post
from train import numbers, pendigits, piece_reader
from train.evaluation import in_process, read_of

WRITERS = {"held-out": pendigits.held_out, "trainable": pendigits.trainable, "tuning": pendigits.tuning}
WRITERS_NAMES = {
    "held-out": "21-30 (never trained on)",
    "trainable": "1-20 (trained on: segmentation only)",
    "tuning": "17-20 (what a TUNE=1 model never trained on: to tune on)",
}
TARGETS = {"apart": 0.97, "close": 0.95, "touching": 0.80}  # issue 27, "Done when"
SINGLES_WITHIN = 0.2  # points: /read of one digit against /predict of the same drawing
KINDS = ["exact", "too many pieces", "too few pieces", "misread", "not a digit", "refused"]
SENT = {"picture": "as the picture alone (a data URL)", "strokes": "with the strokes, as the page sends them"}


def outcome(label: str, status: int, answer: dict) -> str:
    if status != 200:
        return "refused"
    if answer["number"] == label:
        return "exact"
    count = len(answer["digits"])
    if count != len(label):
        return "too many pieces" if count > len(label) else "too few pieces"
    return "misread" if answer["number"] is not None else "not a digit"


def ask(url: str, bodies: list[bytes], clients: int = 4) -> list[tuple[int, dict]]:
    """(status, answer) per body POSTed to url, in order, by `clients` at a time: JSON as JSON (the page's
    strokes), a data URL as text."""

    def one(body: bytes) -> tuple[int, dict]:
        return post(url, body, "application/json" if body.startswith(b"{") else "text/plain")

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, bodies))


def with_strokes(found: list[numbers.Number], seed: int) -> list[bytes]:
    """Each number as the page sends it: its data URL and its strokes, with times (numbers.page_strokes)."""
    rng = random.Random(seed + 2)
    return [
        json.dumps(
            {"image": data_url_of(n.png).decode(), "strokes": numbers.page_strokes(n.drawings, rng)}
        ).encode()
        for n in found
    ]


def report(found: list[numbers.Number], answers: list[tuple[int, dict]], alone: list[bool]) -> None:
    table, refusals = collections.defaultdict(collections.Counter), collections.Counter()
    right_alone = collections.Counter()
    for n, (status, answer), ok in zip(found, answers, alone, strict=True):
        kind = outcome(n.label, status, answer)
        for key in [(n.spacing, n.canvas), (n.spacing, None), ("all", None), ("length", len(n.label))]:
            table[key][kind] += 1
            right_alone[key] += ok
        if kind == "refused":
            refusals[f"{status} {answer.get('reason') or answer.get('error', '')[:60]}"] += 1
    heading = f"  {'spacing':<10}{'canvas':<9}{'numbers':>8}{'exact':>8}{'alone':>8}{'target':>8}  "
    print(heading + ", ".join(KINDS[1:]))
    rows = [(s, c) for s in numbers.SPACINGS for c in [*numbers.CANVASES, None]] + [("all", None)]
    for spacing, canvas in rows:
        counts = table[spacing, canvas]
        n = sum(counts.values())
        if not n:  # --per-class 1 leaves a canvas without numbers
            continue
        where = f"{canvas[0]}x{canvas[1]}" if canvas else "both"
        target = f"{TARGETS[spacing]:.0%}" if spacing in TARGETS and not canvas else ""
        wrong = ", ".join(f"{counts[k]}" for k in KINDS[1:])
        shares = f"{counts['exact'] / n:>8.2%}{right_alone[spacing, canvas] / n:>8.2%}"
        print(f"  {spacing:<10}{where:<9}{n:>8}{shares}{target:>8}  {wrong}")
    lengths = sorted(k for k in table if k[0] == "length")
    exact = (f"{k[1]}: {table[k]['exact'] / sum(table[k].values()):.2%}" for k in lengths)
    print("  exact by number of digits: " + "  ".join(exact))
    if refusals:
        print("  refusals: " + ", ".join(f"{reason} x{c}" for reason, c in refusals.most_common()))


def alone(found: list[numbers.Number]) -> list[tuple[int, bytes]]:
    """(label, data URL) of every digit of every number, drawn alone where it stands on its canvas."""
    return [(d.label, data_url_of(numbers.drawn_png([d], n.canvas))) for n in found for d in n.drawings]


def all_right(found: list[numbers.Number], predicted: list) -> list[bool]:
    """Per number: whether every digit of it was read right alone (predicted: in alone()'s order)."""
    read = iter(predicted)
    return [all([next(read) == d.label for d in n.drawings]) for n in found]  # a list: consume every digit


def singles(digits: list, limit: int | None, seed: int) -> list[tuple[int, bytes, bytes]]:
    """(label, data URL, JSON with its strokes) of each digit (or a sample of `limit`) drawn alone on each
    canvas."""
    if limit:
        digits = random.Random(seed).sample(digits, limit)
    rng, pen = random.Random(seed + 1), random.Random(seed + 3)
    found = []
    for canvas in numbers.CANVASES:
        for d in digits:
            drawings = numbers.place([d], rng, canvas)  # as numbers.compose() lays one digit out
            url = data_url_of(numbers.drawn_png(drawings, canvas))
            strokes = json.dumps({"image": url.decode(), "strokes": numbers.page_strokes(drawings, pen)})
            found.append((d.label, url, strokes.encode()))
    return found


def data_url_of(png: bytes) -> bytes:
    """The drawing as the page sends it: a PNG data URL (as train/canvases.py data_url)."""
    return b"data:image/png;base64," + base64.b64encode(png)


def report_singles(items, predicted, reads: dict) -> None:
    """predicted: the digit /predict answered per drawing (None: refused, 10: not a digit); reads: /read's
    answers per way of sending."""
    half = len(items) // len(numbers.CANVASES)
    for i, canvas in enumerate([*numbers.CANVASES, None]):
        part = slice(i * half, (i + 1) * half) if canvas else slice(None)
        labels = [label for label, *_ in items[part]]
        by_predict = [label == digit for label, digit in zip(labels, predicted[part], strict=True)]
        p, where = sum(by_predict) / len(labels), f"{canvas[0]}x{canvas[1]}" if canvas else "both"
        for way, read in reads.items():
            by_read = [
                s == 200 and a["number"] == str(label)
                for label, (s, a) in zip(labels, read[part], strict=True)
            ]
            differ = sum(p != r for p, r in zip(by_predict, by_read, strict=True))
            r = sum(by_read) / len(labels)
            print(
                f"  {where:<9}{len(labels):>6} drawings: /predict {p:.2%}, /read {way} {r:.2%}, difference "
                f"{100 * (r - p):+.2f} points (target within {SINGLES_WITHIN}); {differ} read right by one only"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running web app (default: start a stack of its own)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--in-process", type=Path, metavar="MODEL_PT", help="no servers: read_number + model")
    parser.add_argument(
        "--per-class", type=int, default=1000, help="numbers per spacing class (both canvases)"
    )
    parser.add_argument(
        "--singles", type=int, help="a sample of this many held-out digits (default: all; 0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--writers", choices=WRITERS, default="held-out", help="tuning: to tune on")
    parser.add_argument("--send", choices=["both", *SENT], default="both", help="numbers with strokes or not")
    args = parser.parse_args()
    digits = WRITERS[args.writers](pendigits.load())
    found = numbers.numbers(digits, args.per_class * len(numbers.SPACINGS), random.Random(args.seed))
    sent = {
        "picture": lambda: [data_url_of(n.png) for n in found],
        "strokes": lambda: with_strokes(found, args.seed),
    }
    ways = list(SENT) if args.send == "both" else [args.send]
    bodies = [body for way in ways for body in sent[way]()]
    items = singles(digits, args.singles, args.seed) if args.singles != 0 else []
    writers = WRITERS_NAMES[args.writers]
    where = (
        "in-process (read_number + TorchScript)"
        if args.in_process
        else "through the real stack (web app /read)"
    )
    print(f"python -m bench.read_accuracy {' '.join(sys.argv[1:])}")
    # Each single digit to /read as the numbers go: (label, data URL, JSON with strokes) in SENT's order.
    singles_bodies = [item[1 + list(SENT).index(way)] for way in ways for item in items]
    digits_alone, images = alone(found), [(label, url) for label, url, _ in items]
    if args.in_process:
        pieces = piece_reader.beside(args.in_process)  # as the archive has it
        answers, read = (numbers.read_all(b, args.in_process, pieces) for b in (bodies, singles_bodies))
        results = [in_process(args.in_process, x)[0] if x else [] for x in (images, digits_alone)]
        predicted, predicted_alone = ([digit for _, digit, _ in r] for r in results)
    else:
        with web_app(args.url, args.model_dir) as url:
            answers, read = (ask(url + "/read", b) for b in (bodies, singles_bodies))
            predicted, predicted_alone = (
                [read_of(*answer) for answer in ask(url + "/predict", [body for _, body in x])]
                for x in (images, digits_alone)
            )
    for i, way in enumerate(ways):
        print(f"numbers of 2-6 digits, each one writer's, of writers {writers}, {where}, seed {args.seed},")
        print(f"sent {SENT[way]}:")
        report(found, answers[i * len(found) : (i + 1) * len(found)], all_right(found, predicted_alone))
    if items:
        print(f"single digits of writers {writers}, each alone on each canvas, the same drawing to both:")
        reads = {way: read[i * len(items) : (i + 1) * len(items)] for i, way in enumerate(ways)}
        report_singles(items, predicted, reads)


if __name__ == "__main__":
    main()
