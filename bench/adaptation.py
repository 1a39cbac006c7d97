"""Learning a writer (issue 43, docs/writers.md), through the real stack: pen writers 21-30 (never trained on,
train/pendigits.py HELD_OUT_WRITERS), each writer's digits drawn on the page's canvas as the page would
(train/canvases.py) and sent in a random order from a fresh X-Writer id, as the page sends them (/read, its
data URL and its strokes; --picture: the data URL alone). Every wrong answer is corrected through
/api/feedback with its ticket, and every right answer the page shows "not sure" (top probability under
0.8) is confirmed ("Right"), as a person at the page would.
The same drawings are then sent without the header (no memory: the model alone).

    python -m bench.adaptation                          # own stack serving build/convnet (MODEL_DIR)
    python -m bench.adaptation --url http://127.0.0.1:5500 --route /predict
    python -m bench.adaptation --orders 4               # 4 random orders: each, and all together
    python -m bench.adaptation --writers tuning         # writers 17-20, for a TUNE=1 model (to tune on)
    python -m bench.adaptation --cost                   # CPU per drawing: no memory, a full one (in-process)

Reports the later half of every writer's digits, right with and without the header, per writer and in
all; the writers whose later half got worse than unadapted by more than one digit; how many answers were
adapted and the ECE of the adapted answers (15 bins, train/calibration.py, as every figure of ours);
the memory each writer ended with.

--writers tuning takes pen writers 17-20 instead (train/pendigits.py TUNE_WRITERS): what a model trained
with TUNE=1 never saw, on which the rule's constants are chosen (bench/adaptation_trial.py, in-process);
choosing them on 21-30 would spoil 21-30's figure.

--cost measures what a memory costs a drawing, in this process: the handler's handle() CPU time for a
/predict drawing alone, as a part without memory, and beside a full memory (MEMORY_SIZE drawings, its
features cached, as after a writer's first drawing); and the web app's lookup of a writer's memory
(web/writers.py): from its cache, as most drawings are, and when its ids are read again (one indexed query
of a SQLite store holding it, at most once a second per writer).
"""

import argparse
import http.client
import json
import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from bench.toolkit import DEFAULT_MODEL_DIR, web_app
from train import numbers, pendigits
from train.calibration import answered_calibration_error
from train.canvases import data_url

NOT_SURE_BELOW = 0.8  # the page's (web/static/js/render.js)
WRITERS = {"held-out": pendigits.held_out, "tuning": pendigits.tuning}
WRITERS_NAMES = {
    "held-out": "21-30 (never trained on: to report)",
    "tuning": "17-20 (what a TUNE=1 model never trained on: to tune on)",
}


class Page:
    """One writer at the page: a keep-alive connection, and their id when they have one."""

    def __init__(self, url: str, writer: str | None):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"X-Writer": writer} if writer else {}

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
        self.connection.request("POST", path, body, {"Content-Type": content_type, **self.headers})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())


def reading(route: str, status: int, answer: dict) -> tuple[int | None, list | None, bool]:
    """(digit read, None if none; its probabilities, None unless one digit was given; adapted?)"""
    if route == "/predict":
        digit = answer.get("digit") if status == 200 else None
        return digit, answer.get("probabilities") if status == 200 else None, bool(answer.get("adapted"))
    pieces = answer.get("digits") or []
    adapted = any(p.get("adapted") for p in pieces)
    if status != 200 or len(pieces) != 1 or pieces[0].get("digit") is None:
        return None, None, adapted
    return pieces[0]["digit"], pieces[0]["probabilities"], adapted


def feedback(route: str, image: bytes, label: int, status: int, answer: dict) -> dict | None:
    """The page's feedback on an answer: the correction to `label`, or "Right"."""
    if "ticket" not in answer:
        return None
    common = {"image": image.decode(), "version": answer["version"], "ticket": answer["ticket"]}
    if route == "/predict":
        predicted = answer["digit"] if status == 200 else "not_a_digit"
        return {**common, "label": label, "predicted": predicted}
    return {**common, "number": str(label), "predicted": answer.get("number")}


def writer_run(url: str, route: str, items: list[tuple[int, bytes, bytes]], adapt: bool) -> list[dict]:
    """Each drawing's outcome, in order, for one writer (with a fresh id when adapt). An item: (label, the
    data URL, the JSON body with the strokes beside it, or b"" to send the data URL alone)."""
    page = Page(url, secrets.token_urlsafe(16) if adapt else None)
    outcomes = []
    for label, image, with_strokes in items:
        if with_strokes:
            status, answer = page.post(route, with_strokes, "application/json")
        else:
            status, answer = page.post(route, image, "text/plain")
        digit, probabilities, adapted = reading(route, status, answer)
        right = digit == label
        unsure = probabilities is not None and max(probabilities) < NOT_SURE_BELOW
        if adapt and (not right or unsure):
            body = feedback(route, image, label, status, answer)
            if body is not None:
                got, reply = page.post("/api/feedback", json.dumps(body).encode(), "application/json")
                assert got == 201, (got, reply)
        outcomes.append({"right": right, "adapted": adapted, "p": probabilities, "label": label})
    if adapt:
        page.connection.request("DELETE", "/api/writer", headers=page.headers)
        outcomes.append(json.loads(page.connection.getresponse().read()))  # what the memory held
    return outcomes


def cost(model_dir: Path, rounds: int = 2000) -> None:
    import asyncio
    import tempfile
    import time

    import numpy as np

    from bench.toolkit import handle_seconds, handler
    from handler.adapt import pack
    from handler.mnist_form import preprocess
    from web.feedback_store import MEMORY_SIZE, FeedbackStore
    from web.writers import Writers

    digits = [d for d in pendigits.held_out(pendigits.load()) if d.writer == 28][: MEMORY_SIZE + 1]
    rng = random.Random(0)
    drawn = [data_url(pendigits.render(pendigits.layout(d, rng))) for d in digits]
    images = [(preprocess(u) * 255).round().astype(np.uint8).tobytes() for u in drawn[1:]]
    memory = pack([d.label for d in digits[1:]], images)
    instance = handler(model_dir)
    rows = {
        "plain body, no writer": [{"body": drawn[0]}],
        "a part, no memory": [{"drawing-0": drawn[0]}],
        f"a part and a full memory ({MEMORY_SIZE}, {len(memory)} bytes)": [
            {"drawing-0": drawn[0], "memory-0": memory}
        ],
    }
    for row in rows.values():
        handle_seconds(instance, row, 50, time.thread_time)  # warm: the memory's features cached
    for _ in range(3):  # interleaved rounds: the machine's load falls on each alike
        for name, row in rows.items():
            ms = np.array(handle_seconds(instance, row, rounds // 3, time.thread_time)) * 1000
            print(f"handler CPU per drawing, {name}: median {np.median(ms):.3f} ms, mean {ms.mean():.3f} ms")

    async def lookups() -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            store = FeedbackStore(f"{tmp}/feedback.sqlite3")
            for d, image in zip(digits[1:], images, strict=True):
                await store.remember("w" * 64, d.label, image)
            found = {}
            for name, fresh in (("from the cache", 3600.0), ("its ids read again", 0.0)):
                writers = Writers(store, fresh=fresh)
                await writers.memory("w" * 64)
                seconds = []
                for _ in range(rounds // 4):
                    start = time.process_time()  # aiosqlite works in a thread of its own: the process's CPU
                    await writers.memory("w" * 64)
                    seconds.append(time.process_time() - start)
                found[name] = seconds
            await store.close()
            return found

    for name, seconds in asyncio.run(lookups()).items():
        ms = np.array(seconds) * 1000
        print(
            f"web app CPU, a writer's memory {name}: median {np.median(ms):.3f} ms, mean {ms.mean():.3f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running web app (default: a stack of its own)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--route", choices=("/read", "/predict"), default="/read")
    parser.add_argument("--seed", type=int, default=0, help="the first order's seed")
    parser.add_argument(
        "--orders", type=int, default=1, help="random orders, one after another (seed, seed+1, ...)"
    )
    parser.add_argument("--picture", action="store_true", help="/read: the data URL alone, no strokes")
    parser.add_argument("--writers", choices=WRITERS, default="held-out", help="tuning: to tune on")
    parser.add_argument("--cost", action="store_true", help="CPU per drawing of a memory, in-process")
    args = parser.parse_args()
    if args.cost:
        cost(args.model_dir)
        return
    by_writer = writers_digits(args.writers)
    print(f"writers {WRITERS_NAMES[args.writers]}, {args.route}, model {args.model_dir}")
    totals, given, labels = [0, 0, 0], [], []
    with web_app(args.url, args.model_dir) as url, ThreadPoolExecutor(4) as pool:
        for seed in range(args.seed, args.seed + args.orders):
            items = order(by_writer, seed, args.route == "/read" and not args.picture)
            print(f"order {seed}:")
            adapted, plain = (
                dict(
                    zip(
                        items,
                        pool.map(partial(writer_run, url, args.route, adapt=adapt), items.values()),
                        strict=True,
                    )
                )
                for adapt in (True, False)
            )
            found = report(items, adapted, plain)
            totals = [t + f for t, f in zip(totals, found[0], strict=True)]
            given += found[1]
            labels += found[2]
    if args.orders > 1:
        ece, refused = answered_calibration_error(given, labels) if given else (float("nan"), 0)
        print(
            f"{args.orders} orders: later halves {totals[0] / totals[2]:.2%} right with the writer's memory, "
            f"{totals[1] / totals[2]:.2%} without; adapted answers {len(given)}, ECE {ece:.2%}"
        )


def writers_digits(writers: str) -> dict[int, list]:
    """writer -> their digits in the file's order, of the writers named (WRITERS)."""
    by_writer: dict[int, list] = {}
    for digit in WRITERS[writers](pendigits.load()):
        by_writer.setdefault(digit.writer, []).append(digit)
    return by_writer


def order(by_writer: dict, seed: int, strokes: bool) -> dict:
    """Each writer's digits in a random order, laid out on the canvas (train/canvases.py), as data URLs and,
    with strokes, as the page sends them to /read: JSON {"image", "strokes"} (train/numbers.py
    page_strokes gives the pen digits' points times)."""
    rng, pen = random.Random(seed), random.Random(seed + 1)
    items = {}
    for writer, digits in sorted(by_writer.items()):
        digits = list(digits)
        rng.shuffle(digits)
        items[writer] = []
        for d in digits:
            drawing = pendigits.layout(d, rng)
            image = data_url(pendigits.render(drawing))
            body = {"image": image.decode(), "strokes": numbers.page_strokes([drawing], pen)}
            items[writer].append((d.label, image, json.dumps(body).encode() if strokes else b""))
    return items


def report(items: dict, adapted: dict, plain: dict) -> tuple[list, list, list]:
    """Prints one order's table; gives its (right with, right without, later digits), and the adapted
    answers' probabilities and labels."""
    print(f"{'writer':>6} {'digits':>6} {'later':>5} {'with':>7} {'without':>7} {'adapted':>7} {'memory':>6}")
    total = [0, 0, 0]
    worse, given, labels = [], [], []
    for writer in items:
        memory = adapted[writer].pop()["deleted"]
        mine, base = adapted[writer], plain[writer]
        half = len(mine) // 2
        later_with = sum(o["right"] for o in mine[half:])
        later_without = sum(o["right"] for o in base[half:])
        n = len(mine) - half
        total[0] += later_with
        total[1] += later_without
        total[2] += n
        if later_with < later_without - 1:
            worse.append(writer)
        for o in mine:
            if o["adapted"]:
                given.append(o["p"])
                labels.append(o["label"])
        count = sum(o["adapted"] for o in mine)
        print(
            f"{writer:>6} {len(mine):>6} {n:>5} {later_with / n:>7.2%} {later_without / n:>7.2%} {count:>7} {memory:>6}"
        )
    ece, refused = answered_calibration_error(given, labels) if given else (float("nan"), 0)
    print(
        f"later halves: {total[0] / total[2]:.2%} right with the writer's memory, {total[1] / total[2]:.2%} "
        f"without ({total[2]} digits); writers worse by more than one digit: {worse or 'none'}"
    )
    print(f"adapted answers: {len(given)}, ECE {ece:.2%} ({refused} refused, outside the ECE)")
    return total, given, labels


if __name__ == "__main__":
    main()
