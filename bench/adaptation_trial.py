"""Choosing the writer's-memory rule's constants (handler/adapt.py, docs/writers.md), in-process: the
protocol of bench/adaptation.py (each writer's digits in a random order from a fresh memory; every wrong
answer corrected, every right answer shown "not sure" confirmed; the later half of each writer's digits
scored with and without the memory) without the servers, with the handler's own code (bench/toolkit.py
handler: its preprocessing, its model split for features, handler/adapt.py adapt), for a grid of
constants at once: the model runs once per drawing, the rule is replayed per setting.

    python -m bench.adaptation_trial --model-dir /work/exp/t-n0 --writers tuning --orders 8
    python -m bench.adaptation_trial --model-dir /work/exp/t-n0 --writers tuning --route /read

Choose on writers 17-20 (--writers tuning) with a model trained with TUNE=1, which never saw them; writers
21-30 are for reporting only, once, through the real stack (bench/adaptation.py). The settings:

    similar     cosine of features above which a remembered drawing is evidence (adapt's SIMILAR)
    strength    log-odds a remembered drawing adds at the same drawing (adapt's STRENGTH)
    size        drawings a writer's memory keeps, the oldest going first (web/feedback_store.py MEMORY_SIZE)
    confirm     a right answer joins the memory when its top probability is below this (the page's
                "not sure", web/tickets.py NOT_SURE_BELOW: 0.8; 0: corrections only)

What a feedback remembers is the /predict 28x28 of the drawing (uint8, as the store keeps it) with its
label, whose features the model derives, as the handler does (handler/mnist_handler.py _memory). /read
blends every candidate piece and then chooses the cuts (handler/answers.py choose), as served.

Per setting: later halves right with the memory and without (all orders), writers worse than without by
more than one digit (writer-orders), adapted answers, their ECE (15 bins), mean top probability and share
right (of those that gave one digit), the largest memory any writer had, and each order's later halves.
"""

import argparse
import itertools
from dataclasses import dataclass

import numpy as np

from bench.adaptation import NOT_SURE_BELOW, WRITERS, WRITERS_NAMES, order, writers_digits
from bench.toolkit import DEFAULT_MODEL_DIR, handler
from handler.adapt import SIMILAR, STRENGTH, adapt, normalised
from handler.answers import NOT_A_DIGIT, choose, not_a_digit, read_answer
from handler.errors import InputError
from handler.mnist_form import preprocess
from handler.segment import read_candidates
from train.calibration import answered_calibration_error
from web.feedback_store import MEMORY_SIZE


@dataclass
class Drawn:
    label: int
    probabilities: np.ndarray | None  # (n, k): the drawing's, or its candidate pieces' (None: refused)
    features: np.ndarray | None  # (n, d)
    candidates: object  # /read: the candidate pieces (handler/segment.py); /predict: None
    remembered: np.ndarray | None  # (d,) normalised features of the 28x28 a feedback would store


def prepared(instance, items: list, route: str) -> list[Drawn]:
    """One writer's drawings (bench/adaptation.py order's items) read by the model, once."""
    found = []
    for label, image, with_strokes in items:
        try:
            whole = preprocess(image)
        except InputError:
            found.append(Drawn(label, None, None, None, None))
            continue
        stored = (whole * 255).round().astype(np.uint8).astype(np.float32) / 255  # what the store keeps
        candidates, remembered = None, normalised(instance._run(stored[np.newaxis])[1])[0]
        if route == "/predict":
            probabilities, features = instance._run(whole[np.newaxis])
        else:
            try:
                candidates = read_candidates(with_strokes or image)
            except InputError:
                found.append(Drawn(label, None, None, None, remembered))
                continue
            probabilities, features = instance._run(candidates.images)
        found.append(Drawn(label, probabilities, features, candidates, remembered))
    return found


def answered(drawn: Drawn, rows: np.ndarray, adapted: np.ndarray) -> tuple[int | None, list | None, bool]:
    """(digit read or None, its ten probabilities if one digit was given, whether the answer says
    "adapted"), as bench/adaptation.py reading() takes them from the answer."""
    if drawn.candidates is None:
        guess = rows[0][:NOT_A_DIGIT] / rows[0][:NOT_A_DIGIT].sum()
        if not_a_digit(rows[0]):
            return None, None, bool(adapted[0])
        return int(guess.argmax()), guess.tolist(), bool(adapted[0])
    try:
        pieces = read_answer(drawn.candidates, choose(drawn.candidates, rows), adapted)["digits"]
    except InputError:
        return None, None, False
    said = any(p.get("adapted") for p in pieces)
    if len(pieces) != 1 or pieces[0]["digit"] is None:
        return None, None, said
    return pieces[0]["digit"], pieces[0]["probabilities"], said


def replay(drawings: list[Drawn], similar: float, strength: float, size: int, confirm: float) -> list:
    """One writer through the rule with these constants: (right, adapted, probabilities, the memory's
    size before it) per drawing."""
    labels: list[int] = []
    remembered: list[np.ndarray] = []
    outcomes = []
    for d in drawings:
        if d.probabilities is None:
            outcomes.append((False, False, None, min(len(labels), size)))
            continue
        memory = (np.array(labels[-size:]), np.stack(remembered[-size:])) if labels else None
        rows, adapted = adapt(d.probabilities, d.features, memory, similar, strength)
        digit, p, said = answered(d, rows, adapted)
        right = digit == d.label
        top = max(p) if p is not None else 1.0
        if d.remembered is not None and (not right or top < confirm):
            labels.append(d.label)
            remembered.append(d.remembered)
        outcomes.append((right, said, p, min(len(labels), size)))
    return outcomes


def plain(drawings: list[Drawn]) -> list[bool]:
    return [
        d.probabilities is not None
        and answered(d, d.probabilities, np.zeros(len(d.probabilities), bool))[0] == d.label
        for d in drawings
    ]


def score(orders: list[dict], setting) -> dict:
    """A setting over every order: later halves right, writers worse by more than one digit, ECE."""
    right = total = base = 0
    worse, given, labels, per_order, largest = [], [], [], [], 0
    for seed, by_writer in orders:
        order_right = order_total = 0
        for writer, (drawings, without) in by_writer.items():
            outcomes = replay(drawings, *setting)
            largest = max(largest, max(o[3] for o in outcomes))
            half = len(outcomes) // 2
            later = sum(o[0] for o in outcomes[half:])
            later_without = sum(without[half:])
            order_right, order_total = order_right + later, order_total + len(outcomes) - half
            base += later_without
            if later < later_without - 1:
                worse.append((seed, writer))
            for (_, adapted, p, _), d in zip(outcomes, drawings, strict=True):
                if adapted:
                    given.append(p)
                    labels.append(d.label)
        right, total = right + order_right, total + order_total
        per_order.append(order_right / order_total)
    ece = answered_calibration_error(given, labels)[0] if given else float("nan")
    answered = [(max(p), int(np.argmax(p)) == label) for p, label in zip(given, labels, strict=True) if p]
    confidence, accuracy = (np.mean([a[i] for a in answered]) if answered else np.nan for i in (0, 1))
    return {
        "with": right / total, "without": base / total, "worse": worse, "adapted": len(given), "ece": ece,
        "confidence": confidence, "accuracy": accuracy, "largest": largest, "orders": per_order,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--writers", choices=WRITERS, default="tuning")
    parser.add_argument("--route", choices=("/read", "/predict"), default="/predict")
    parser.add_argument("--picture", action="store_true", help="/read: the data URL alone, no strokes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--orders", type=int, default=8)
    parser.add_argument("--similar", type=float, nargs="+", default=[0.75, 0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--strength", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--size", type=int, nargs="+", default=[MEMORY_SIZE])
    parser.add_argument("--confirm", type=float, nargs="+", default=[NOT_SURE_BELOW])
    args = parser.parse_args()
    instance = handler(args.model_dir)
    by_writer = writers_digits(args.writers)
    strokes = args.route == "/read" and not args.picture
    orders = []
    for seed in range(args.seed, args.seed + args.orders):
        drawn = {
            w: prepared(instance, items, args.route) for w, items in order(by_writer, seed, strokes).items()
        }
        orders.append((seed, {w: (d, plain(d)) for w, d in drawn.items()}))
        print(f"order {seed} read", flush=True)
    print(
        f"writers {WRITERS_NAMES[args.writers]}, {args.route}{' (picture)' if args.picture else ''}, "
        f"model {args.model_dir}, orders {args.seed}-{args.seed + args.orders - 1}; served: similar "
        f"{SIMILAR}, strength {STRENGTH}, size {MEMORY_SIZE}, confirm {NOT_SURE_BELOW}"
    )
    print(f"{'similar':>7} {'strength':>8} {'size':>4} {'confirm':>7} {'with':>7} {'without':>7} "
          f"{'worse':>5} {'adapted':>7} {'ECE':>6} {'conf':>6} {'right':>6} {'mem':>3}  per order")  # fmt: skip
    grid = itertools.product(args.similar, args.strength, args.size, args.confirm)
    for setting in grid:
        s = score(orders, setting)
        print(
            f"{setting[0]:>7} {setting[1]:>8} {setting[2]:>4} {setting[3]:>7} {s['with']:>7.2%} "
            f"{s['without']:>7.2%} {len(s['worse']):>5} {s['adapted']:>7} {s['ece']:>6.2%} "
            f"{s['confidence']:>6.2%} {s['accuracy']:>6.2%} {s['largest']:>3}  "
            + " ".join(f"{o:.2%}" for o in s["orders"]),
            flush=True,
        )


if __name__ == "__main__":
    main()
