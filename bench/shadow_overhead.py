"""What a shadow version costs /predict: p50 with SHADOW_VERSION set against without, in one run.

    python -m bench.shadow_overhead                  # starts its own TorchServe and two web apps
    python -m bench.shadow_overhead --clients 1 4 --rounds 10 --block 1 --percent 100 25

One TorchServe serves version 1.0 (the default) and 2.0 (the shadow: the same model archived again, so
a copy costs what an answer costs; its workers reniced as `make shadow` does, --no-renice to compare).
Web apps in front of it: "plain" (no shadow) and one per --percent (SHADOW_VERSION=2.0 and that
SHADOW_PERCENT; the first is the default's figure). The load alternates between them in blocks of --block
seconds, in the order plain, shadow..., shadow..., plain, ... (so a drift in the machine's speed lands on
all), with bench/closed_loop.py's load generator; the p50 of each over all its blocks is compared
with plain's. Target: <= 1.10 at the default SHADOW_PERCENT. The copies' work is real (the shadow's
workers compete for the same cores), and it happens after each answer, while the client sends its next
request: back-to-back load with no pause between requests, the worst case for a copy.
"""

import argparse
import asyncio
import copy
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.canvas_body import canvas_data_url
from bench.closed_loop import RawConnection, load
from bench.latency import DEFAULT_MODEL_DIR
from scripts.lifecycle import shadow as lower_priority
from scripts.tsctl import TorchServe
from tests.stack import ROOT, Stack, archive, free_port_base
from web.traffic import TrafficConfig

TARGET = 1.10


async def alternate(urls: dict, body: bytes, clients: int, rounds: int, block: float) -> dict:
    """{name: latencies in s} over `rounds` ABBA rounds of `block` seconds per target."""
    latencies, errors = {name: [] for name in urls}, {name: 0 for name in urls}
    names = list(urls)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            headers = {"Content-Type": "text/plain"}
            result = await load(name, urls[name], body, headers, clients, block, 0.2, RawConnection, dict)
            latencies[name] += result.latencies
            errors[name] += result.errors
    return {"latencies": latencies, "errors": errors}


def shadow_workers(stack: Stack) -> None:
    """`make shadow VERSION=2.0`: the shadow's workers at nice 19."""
    ts = TorchServe(stack.run_dir, ROOT / "config.properties", stack.model_store, stack.port_base)
    lower_priority(ts, "2.0")


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] * 1000


def shadow_counts(web_url: str) -> dict:
    text = urllib.request.urlopen(web_url + "/metrics", timeout=10).read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("digit_shadow_requests_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=10, help="ABBA rounds (an even number is fairest)")
    parser.add_argument("--block", type=float, default=1.0, help="measured seconds per target per round")
    default = TrafficConfig.shadow_percent
    parser.add_argument(
        "--percent", type=float, nargs="+", default=[default, 100] if default < 100 else [100]
    )
    parser.add_argument("--no-renice", dest="renice", action="store_false", help="shadow workers at nice 0")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    archive(args.model_dir.resolve(), work / "model_store", "1.0")
    archive(args.model_dir.resolve(), work / "model_store", "2.0")
    plain = Stack(work / "run", work / "model_store")
    plain.run_dir.mkdir(parents=True)
    shadows = []
    try:
        plain.start_torchserve()
        plain.tsctl("register", "2.0")
        if args.renice:
            shadow_workers(plain)
        plain.start_web()
        urls = {"plain": plain.web_url + "/predict"}
        for percent in args.percent:
            shadow = copy.copy(plain)  # the same TorchServe, another web app on a port of its own
            shadow.web_port = free_port_base(1)
            shadow.web_url = f"http://127.0.0.1:{shadow.web_port}"
            shadow.start_web(SHADOW_VERSION="2.0", SHADOW_PERCENT=f"{percent:g}")
            shadows.append(shadow)
            urls[f"shadow {percent:g}%"] = shadow.web_url + "/predict"
        body = canvas_data_url(0)
        print(f"{args.rounds} rounds x {args.block:g} s per web app and client count, alternating")
        failed = False
        for clients in args.clients:
            asyncio.run(alternate(urls, body, clients, 1, 1.0))  # unmeasured: JIT, pools, caches
            runs = asyncio.run(alternate(urls, body, clients, args.rounds, args.block))
            plain_p50 = p50(runs["latencies"]["plain"])
            print(
                f"{clients:>2} client(s): p50 plain {plain_p50:.2f} ms ({len(runs['latencies']['plain'])} requests)"
            )
            for name, percent in zip(list(urls)[1:], args.percent, strict=True):
                ratio = p50(runs["latencies"][name]) / plain_p50
                verdict = (
                    f"{'PASS' if ratio <= TARGET else 'FAIL'}, <= {TARGET}" if percent == default else "info"
                )
                failed |= percent == default and ratio > TARGET
                print(
                    f"   {name:>12}: p50 {p50(runs['latencies'][name]):.2f} ms "
                    f"({len(runs['latencies'][name])} requests); ratio {ratio:.3f} ({verdict})"
                )
            print(f"   errors {json.dumps(runs['errors'])}")
        for name, shadow in zip(list(urls)[1:], shadows, strict=True):
            print(f"{name} copies by outcome: {json.dumps(shadow_counts(shadow.web_url))}")
        return 1 if failed else 0
    finally:
        for shadow in shadows:
            shadow.stop_web()
        plain.stop()


if __name__ == "__main__":
    sys.exit(main())
