"""The evaluation gate: evaluate a registered version against the default, promote it, roll back.

    python -m scripts.lifecycle evaluate VERSION    # make evaluate VERSION=x: print the comparison table
    python -m scripts.lifecycle promote VERSION     # make promote VERSION=x: evaluate, then set-default or refuse
    python -m scripts.lifecycle rollback            # make rollback: the previous default back
    python -m scripts.lifecycle shadow VERSION      # make shadow VERSION=x: x's workers at the lowest priority

Both versions answer the same drawings through the running TorchServe (`make serve`; TS_RUN_DIR, keys and
ports as scripts/tsctl.py finds them), by version, with the inference key:
  MNIST test    EVAL_MNIST (default 2,000) MNIST test digits, a fixed seeded sample, drawn on a canvas;
  pen digits    EVAL_PEN (default 0: all 2,498) digits of writers 21-30, never trained on, rendered as
                train/canvases.py draws them (as `make bench-canvas` measures);
  feedback      the feedback hold-out (train/feedback_data.py, FEEDBACK_DB), when there is one;
  non-digits    EVAL_NONDIGITS (default 2) drawings of each held-out non-digit glyph and 200 per held-out
                shape kind (train/nondigits.py: fonts and shapes never trained on), label 10;
  numbers       EVAL_NUMBERS (default 150; 0: none) numbers of 2-6 digits, each of one writer's digits of
                writers 21-30, written apart, close and touching in turn on 560x280 and 280x280 canvases
                (train/numbers.py, as bench/read_accuracy.py draws them), read in-process by
                handler.answers.read_number with each version's model (model.pt of its archive in the
                model store): whole strings read exactly, per spacing. Reported, not gated.
About 10,000 requests with the defaults: 67 s on the 2 cores here, busy with other work.

A drawing answered 422 "not_a_digit" counts as read 10: wrong for a real digit, right for a non-digit
(and for a feedback drawing a person confirmed as not a digit). Per dataset the table adds the share of
real digits rejected and of non-digits rejected.

The gate (promote): on each dataset, the paired drawings the default reads right and the candidate
wrong (b) and the other way round (c) give McNemar's statistic z = (b - c) / sqrt(b + c). The candidate
is refused when z > 3 on any dataset: worse than the default by more than three standard errors of the
paired difference. A candidate exactly as good as the default is refused by chance with probability
0.13% per dataset (one-sided normal tail), ~0.4% over the three; the margin in accuracy is 3 sqrt(b + c)
/ n, and so shrinks with the sample: with the defaults and ~20 drawings read differently it is 0.67 pp
on 2,000 MNIST digits and 0.54 pp on the 2,498 pen digits. Calibration is reported, not gated: the ECE
of answers, refused drawings (no digit drawn, not a digit) left out and counted beside it
(train/calibration.py answered_calibration_error, as `make bench-canvas` reports it).

Rejected real digits are gated on their own, since "not a digit" for a real digit is the error a
person minds most: on each dataset of real digits, the candidate is refused when it rejects more of
them than the default beyond chance (McNemar's z over the paired rejections > 3, as above) AND more than
the budget REJECT_BUDGET (0.5%, docs/not-a-digit.md) beyond chance (the exact one-sided binomial tail
P(X >= rejected | n, 0.5%) below 0.135%, the same 3-sigma level). The budget keeps a first version that
says "not a digit" from being refused against a default that never says it, for rejections it was
designed to make; beyond the budget, any rise over the default is refused.

Shadow versions (web app's SHADOW_VERSION) double the model's CPU work, and on a machine with no idle
core the copies would slow the answers: `make shadow` renices the version's workers (every thread) to 19,
so the kernel runs them only on CPU time the default's workers leave. Workers TorchServe restarts come
back at normal priority (run it again). Priority cannot be raised back without privileges, so `make
promote` re-registers a reniced candidate (fresh workers) before it becomes the default.
"""

import argparse
import io
import json
import math
import os
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from handler.answers import NOT_A_DIGIT, PIECE_READER_FILE
from scripts import default_history
from scripts.tsctl import (
    MODEL,
    ROOT,
    Fail,
    TorchServe,
    add_server_arguments,
    default_version,
    exit_code,
    register,
    server,
    set_default,
)
from train import numbers
from train.canvases import drawings, mnist_drawings, nondigit_drawings
from train.evaluation import Result, Score, result, score
from train.feedback_data import holdout_drawings

Z_REFUSE = 3.0  # McNemar's z above which a candidate is worse than the default (see the docstring)
P_REFUSE = 0.00135  # the one-sided normal tail at 3 sigma: the same level for the exact binomial test
REJECT_BUDGET = 0.005  # share of real digits a version may answer "not a digit" (docs/not-a-digit.md)
CLIENTS = 4  # concurrent requests: enough for TorchServe to batch, without swamping 2 cores


def datasets(mnist: int, pen: int, seed: int, nondigits: int = 2) -> dict[str, list[tuple[int, bytes]]]:
    """name -> [(label, body)]; the feedback hold-out only when there is one (a printed note otherwise)."""
    mnist_dir = os.environ.get("MNIST_DIR", str(ROOT / "data"))
    found = {
        f"MNIST test ({mnist or 10000}, seed {seed})": mnist_drawings(mnist_dir, mnist, seed),
        "pen digits, writers 21-30": drawings(pen or None, seed),
    }
    if nondigits > 0:
        found["non-digits, held-out families"] = [(NOT_A_DIGIT, b) for _, b in nondigit_drawings(nondigits)]
    feedback = feedback_holdout(os.environ.get("FEEDBACK_DB", str(ROOT / "data" / "feedback.sqlite3")))
    if feedback:
        found["feedback hold-out"] = feedback
    return found


def feedback_holdout(db_url: str) -> list[tuple[int, bytes]]:
    if "://" not in db_url and not Path(db_url).exists():
        print(f"feedback hold-out: skipped ({db_url} does not exist)")
        return []
    rows = [(label, png) for png, label in holdout_drawings(db_url)]
    if not rows:
        print(f"feedback hold-out: skipped ({db_url} holds no held-out drawings)")
    return rows


def answers(ts: TorchServe, version: str, items: list[tuple[int, bytes]]) -> list[Result]:
    """What `version` reads of each drawing (train/evaluation.py: "not a digit" read as 10, another 4xx
    such as 'no digit drawn' as None, counted as wrong). Anything else (5xx, unreachable) stops the
    evaluation: that is not the model."""

    def ask(item: tuple[int, bytes]) -> Result:
        status, body = ts.call("inference", "POST", f"/predictions/{MODEL}/{version}", item[1])
        if status in (200, 422):
            return result(item[0], status, json.loads(body))
        if 400 <= status < 500 and status != 404:
            return result(item[0], status, {})
        raise Fail(f"version {version} answered {status}: {body[:200].decode(errors='replace')}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(ask, items))


def rejection_gate(default: Score, candidate: Score, real: list[bool]) -> tuple[float, float, bool]:
    """Over the real digits only: (McNemar's z of the paired rejections, the binomial tail of the
    candidate's rejections against REJECT_BUDGET, refused?) (see the docstring)."""
    pairs = [(d, c) for d, c, r in zip(default.rejected, candidate.rejected, real, strict=True) if r]
    b = sum(c and not d for d, c in pairs)  # rejected by the candidate only
    c = sum(d and not c for d, c in pairs)
    z = (b - c) / math.sqrt(b + c) if b + c else 0.0
    tail = binomial_tail(sum(c for _, c in pairs), len(pairs), REJECT_BUDGET)
    return z, tail, z > Z_REFUSE and tail < P_REFUSE


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log space: n is thousands)."""
    if k <= 0:
        return 1.0
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def mcnemar(default: Score, candidate: Score) -> tuple[float, float]:
    """(z, margin in accuracy): z > Z_REFUSE means the candidate is worse beyond chance."""
    b = sum(d and not c for d, c in zip(default.right, candidate.right, strict=True))
    c = sum(c and not d for d, c in zip(default.right, candidate.right, strict=True))
    if b + c == 0:
        return 0.0, 0.0
    return (b - c) / math.sqrt(b + c), Z_REFUSE * math.sqrt(b + c) / default.n


def evaluate(
    ts: TorchServe, candidate: str, mnist: int, pen: int, seed: int, nondigits: int = 2, count: int = 0
) -> bool:
    """Print the comparison table (and, count > 0, whole-number accuracy); True when the candidate passes
    the gate on every dataset."""
    default = default_version(ts)
    ts.manage("GET", f"/models/{MODEL}/{candidate}")  # a clear error if it is not registered
    started = time.monotonic()
    sets = datasets(mnist, pen, seed, nondigits)
    versions = [default] if candidate == default else [default, candidate]
    print(f"comparing version {candidate} with the default {default} on {ts.url('inference')}")
    passed = True
    for name, items in sets.items():
        labels = [label for label, _ in items]
        scores = {v: score(answers(ts, v, items)) for v in versions}
        print(f"\n{name}: {len(items)} drawings")
        real = [label != NOT_A_DIGIT for label in labels]
        heading = (
            f"  {'version':<16}{'accuracy':>9}{'ECE of answers':>15}{'refused':>8}"
            f"{'digits rejected':>16}{'non-digits rejected':>20} | "
        )
        print(heading + " ".join(f"{d:>5}" for d in range(10)))
        for v, s in scores.items():
            label = f"{v} (default)" if v == default else v
            digits = " ".join(f"{100 * s.per_digit[d]:5.1f}" for d in range(10))
            shares = [
                share([x for x, r in zip(s.rejected, real, strict=True) if r == want])
                for want in (True, False)
            ]
            figures = f"{s.accuracy:9.2%}{s.ece:15.3f}{s.refused:8d}{shares[0]:>16}{shares[1]:>20}"
            print(f"  {label:<16}{figures} | {digits}")
        z, margin = mcnemar(scores[default], scores[candidate])
        worse = z > Z_REFUSE
        passed &= not worse
        change = 100 * (scores[candidate].accuracy - scores[default].accuracy)
        print(
            f"  {candidate} vs {default}: {change:+.2f} pp, McNemar z = {z:.2f} (refused above {Z_REFUSE:g}; "
            f"margin {100 * margin:.2f} pp): {'WORSE' if worse else 'ok'}"
        )
        if any(real):
            z_rejected, tail, refused = rejection_gate(scores[default], scores[candidate], real)
            passed &= not refused
            print(
                f"  real digits rejected: McNemar z = {z_rejected:.2f}, P(as many at the {REJECT_BUDGET:.1%} "
                f"budget) = {tail:.2g} (refused when z > {Z_REFUSE:g} and P < {P_REFUSE:g}): "
                f"{'REJECTS TOO MANY' if refused else 'ok'}"
            )
    print(f"\n{sum(map(len, sets.values())) * len(versions)} requests in {time.monotonic() - started:.0f} s")
    if count > 0:
        read_numbers(ts, versions, default, candidate, count, seed)
    return passed


def read_numbers(ts: TorchServe, versions: list[str], default: str, candidate: str, count: int, seed: int):
    """Whole numbers read exactly by each version, in-process (see the docstring): reported, not gated."""
    started, found = time.monotonic(), numbers.held_out(count, seed)
    print(f"\nnumbers of 2-6 digits, writers 21-30, read in-process, reported (not gated): {count} numbers")
    right = {}
    for v in versions:
        try:
            model = io.BytesIO(archived_model(ts, v))
            pieces = archived_piece_reader(ts, v)
        except (OSError, KeyError) as e:
            print(f"  {v}: skipped (no model in {ts.model_store}/{MODEL}-{v}.mar: {e})")
            return
        answers = numbers.read_all([n.png for n in found], model, pieces and io.BytesIO(pieces))
        right[v] = [s == 200 and a["number"] == n.label for n, (s, a) in zip(found, answers, strict=True)]
        mine = {
            k: [r for r, n in zip(right[v], found, strict=True) if n.spacing == k] for k in numbers.SPACINGS
        }
        shares = "  ".join(f"{k} {share(r)}" for k, r in [*mine.items(), ("all", right[v])])
        print(f"  {f'{v} (default)' if v == default else v:<16}{shares}")  # a word first: not a dataset's row
    z, _ = mcnemar(
        *(Score(count, sum(right[v]) / count, 0.0, {}, right[v], []) for v in (default, candidate))
    )
    print(f"  {candidate} vs {default}: McNemar z = {z:.2f} over all; {time.monotonic() - started:.0f} s")


def archived_model(ts: TorchServe, version: str) -> bytes:
    """The TorchScript model in the version's archive (model_store/mnist-VERSION.mar, a zip)."""
    with zipfile.ZipFile(ts.model_store / f"{MODEL}-{version}.mar") as mar:
        return mar.read(json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["serializedFile"])


def archived_piece_reader(ts: TorchServe, version: str) -> bytes | None:
    """The version's piece reader (pieces.pt, train/piece_reader.py) in its archive; None without one."""
    with zipfile.ZipFile(ts.model_store / f"{MODEL}-{version}.mar") as mar:
        return mar.read(PIECE_READER_FILE) if PIECE_READER_FILE in mar.namelist() else None


def share(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.2%}" if flags else "-"


def promote(
    ts: TorchServe, candidate: str, mnist: int, pen: int, seed: int, nondigits: int = 2, count: int = 0
) -> int:
    if not evaluate(ts, candidate, mnist, pen, seed, nondigits, count):
        print(f"\nrefused: version {candidate} is worse than the default (table above); default unchanged")
        return 1
    if default_version(ts) == candidate:
        print(f"\nversion {candidate} is already the default")
        return 0
    if any(os.getpriority(os.PRIO_PROCESS, pid) > 0 for pid in worker_pids(ts, candidate)):
        print(f"\nversion {candidate} runs at low priority (a shadow): registering it afresh first")
        ts.manage("DELETE", f"/models/{MODEL}/{candidate}")
        register(ts, candidate)
    set_default(ts, candidate)
    print(f"\npromoted: version {candidate} is the default (`make rollback` returns to the previous one)")
    return 0


def worker_pids(ts: TorchServe, version: str) -> list[int]:
    workers = ts.manage("GET", f"/models/{MODEL}/{version}")[0]["workers"]
    return [w["pid"] for w in workers if w.get("pid", -1) > 1]  # -1: still starting


def shadow(ts: TorchServe, version: str) -> int:
    if version == default_version(ts):
        raise Fail(f"version {version} is the default: a shadow must be another version")
    pids = worker_pids(ts, version)
    try:
        for pid in pids:  # nice is per thread on Linux: every thread of the worker
            for thread in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(thread.name), 19)
    except (PermissionError, FileNotFoundError) as e:
        raise Fail(f"cannot renice the workers of version {version}: {e}")
    print(
        f"version {version}: workers {sorted(pids)} at nice 19; now start the web app with SHADOW_VERSION={version}"
    )
    return 0


def rollback(ts: TorchServe) -> int:
    history, current = default_history.read(ts.run_dir), default_version(ts)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise Fail("no previous default to return to (make promote / make set-default record them)")
    previous = history.pop()
    print(ts.manage("PUT", f"/models/{MODEL}/{previous}/set-default")["status"])
    default_history.write(ts.run_dir, history)
    print(f"rolled back: version {previous} is the default again (was {current})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["evaluate", "promote", "rollback", "shadow"])
    parser.add_argument("version", nargs="?", default=os.environ.get("VERSION", ""))
    add_server_arguments(parser)
    parser.add_argument("--mnist", type=int, default=int(os.environ.get("EVAL_MNIST", 2000)))
    parser.add_argument("--pen", type=int, default=int(os.environ.get("EVAL_PEN", 0)), help="0: all 2,498")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("EVAL_SEED", 0)))
    parser.add_argument(
        "--nondigits", type=int, default=int(os.environ.get("EVAL_NONDIGITS", 2)), help="copies; 0: none"
    )
    parser.add_argument(
        "--numbers", type=int, default=int(os.environ.get("EVAL_NUMBERS", 150)), help="0: none"
    )
    args = parser.parse_args()
    ts = server(args)

    def run() -> int:
        if not ts.pid():
            raise Fail("TorchServe is not running: `make serve` first")
        if args.command == "rollback":
            return rollback(ts)
        if not args.version:
            raise Fail(f"which version? make {args.command} VERSION=x")
        if args.command == "shadow":
            return shadow(ts, args.version)
        if args.command == "promote":
            return promote(ts, args.version, args.mnist, args.pen, args.seed, args.nondigits, args.numbers)
        evaluate(
            ts, args.version, args.mnist, args.pen, args.seed, args.nondigits, args.numbers
        )  # informational: exit 0 either way
        return 0

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
