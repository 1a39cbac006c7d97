"""One client floods /predict at 4x its rate limit; another, from another address, should not notice.

    python -m bench.flood                        # make bench-flood: limits scaled to this stack, 15 s phases
    python -m bench.flood --shipped-limits       # the shipped defaults, whatever this machine's capacity
    python -m bench.flood --seconds 10 --rounds 1

A real stack (TorchServe + the web app, tests/stack.py). The shipped /predict limit is a tenth of a
pod's capacity measured on a quiet machine (docs/limits.md); this machine's capacity varies severalfold
with its neighbours, and the same 150/s is a third of a slow moment's. So by default the run first
measures this stack's capacity (wrk, 16 connections, no limits) and applies the defaults' rule to it: a
tenth of it, burst 2 s of that rate (--shipped-limits keeps the shipped numbers). The second client ("B") sends canvases from 127.0.0.2 (its socket bound to that
local address; the web app listens on 127.0.0.1) at a steady rate under its limit; it runs alone
("idle"), then beside the flooder ("flood"): wrk (bench/flood.lua) sending from 127.0.0.1 at about 4x
the /predict limit. Phases alternate (--rounds) so both see the same moments of a noisy machine.
Printed: B's p50/p99 in each phase and their ratio (issue 28: p99 within 2x of idle), and what the
flooder got (answers, 429s, the rate let through).
"""

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.canvas_body import canvas_data_url
from bench.wrk import wrk
from tests.stack import Stack, archive
from web.ratelimit import DEFAULT_LIMITS, Limit

DEFAULT_MODEL_DIR = Path(os.environ.get("MODEL_DIR", "build/convnet"))
CAPACITY_SHARE = 0.1  # the defaults' rule (docs/limits.md): one client gets at most a tenth of a pod


async def steady(url: str, local: str, rate: float, seconds: float, in_flight: int) -> dict:
    """Open loop: a request every 1/rate s from `local`, at most `in_flight` waiting. Latencies of 200s,
    and the count of each status."""
    body = canvas_data_url(0)
    connector = aiohttp.TCPConnector(local_addr=(local, 0), limit=in_flight)
    latencies, statuses = [], {}
    slots = asyncio.Semaphore(in_flight)

    async def one(session):
        started = time.perf_counter()
        try:
            async with session.post(url + "/predict", data=body) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            status = 0
        finally:
            slots.release()
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        tasks, start, i = [], time.perf_counter(), 0
        while (due := start + i / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await slots.acquire()  # behind schedule when the server is slower than the rate: waits here
            tasks.append(asyncio.create_task(one(session)))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "sent": i, "elapsed": elapsed}


CONNECTIONS = 32  # closed loop with a pause each: enough of them that slow answers still leave ~the rate


def flooder(url: str, rate: float, seconds: float, body_file: Path, lockstep: bool) -> subprocess.Popen:
    """wrk (C, one thread: far cheaper per request than a Python client on 2 shared cores) from
    127.0.0.1: CONNECTIONS connections, each pausing so that together they send about `rate` a second:
    at random moments, or in lockstep (all CONNECTIONS at once, every CONNECTIONS / rate s)."""
    pause_ms = CONNECTIONS * 1000 / rate
    command = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "-s",
        str(Path(__file__).with_name("flood.lua")),
    ]
    command += [url + "/predict", "--", str(body_file), f"{pause_ms:.2f}"]
    command += ["lockstep"] if lockstep else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def flood_result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=120)
    doc = json.loads(out.strip().splitlines()[-1])
    statuses = {int(k): v for k, v in doc["statuses"].items()}
    return {"statuses": statuses, "sent": doc["requests"], "elapsed": doc["duration_us"] / 1e6}


def scaled_limit(stack: Stack, body: bytes) -> tuple[Limit, float]:
    """This stack's /predict capacity (wrk, 16 connections, 5 s, the tests' raised limits) and the
    defaults' rule applied to it."""
    stack.start_web()
    capacity = wrk(stack.web_url + "/predict", body, {}, 16, 5).rps
    stack.stop_web()
    rate = CAPACITY_SHARE * capacity
    return Limit(rate, 2 * rate), capacity


def percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    return tuple(float(np.percentile(latencies, q)) * 1000 for q in (50, 99))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, help="client B's requests a second (half its limit)")
    parser.add_argument("--flood", type=float, default=4, help="the flooder's rate, in /predict limits")
    parser.add_argument("--lockstep", action="store_true", help="the flood in bursts of 32 at once")
    parser.add_argument("--shipped-limits", action="store_true", help="the shipped defaults, not scaled")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flood-") as folder:
        store = Path(folder) / "model_store"
        archive(args.model_dir.resolve(), store, "1.0")
        body_file = Path(folder) / "canvas.txt"
        body_file.write_bytes(canvas_data_url(0))
        stack = Stack(Path(folder) / "run", store)
        stack.run_dir.mkdir()
        stack.start_torchserve()
        predict, capacity = DEFAULT_LIMITS["/predict"], None
        if not args.shipped_limits:
            predict, capacity = scaled_limit(stack, body_file.read_bytes())
        flood_rate = args.flood * predict.rate
        args.rate = args.rate or predict.rate / 2
        # The shipped defaults for every route; /predict's scaled unless --shipped-limits.
        stack.start_web(WEB_RATE_LIMITS=f"/predict={predict.rate:.1f}:{predict.burst:.1f}")
        try:
            results = {"idle": [], "flood": []}
            floods = []
            asyncio.run(steady(stack.web_url, "127.0.0.2", args.rate, 2, 8))  # warm-up
            for _ in range(args.rounds):
                results["idle"].append(
                    asyncio.run(steady(stack.web_url, "127.0.0.2", args.rate, args.seconds, 64))
                )
                process = flooder(stack.web_url, flood_rate, args.seconds + 1, body_file, args.lockstep)
                time.sleep(0.5)  # the flood is under way before B measures
                results["flood"].append(
                    asyncio.run(steady(stack.web_url, "127.0.0.2", args.rate, args.seconds, 64))
                )
                floods.append(flood_result(process))
        finally:
            stack.stop()
    if capacity:
        print(f"this stack's capacity: {capacity:.0f} req/s (wrk, 16 connections): the limit is a tenth")
    print(
        f"/predict limit {predict.rate:.0f}/s (burst {predict.burst:.0f}) per client; client B from 127.0.0.2 at {args.rate:g}/s;"
    )
    print(
        f"the flooder from 127.0.0.1 at {flood_rate:.0f}/s ({args.flood:g}x the limit, {'in lockstep' if args.lockstep else 'at random moments'}); {args.rounds} x {args.seconds:g} s per phase"
    )
    summary = {}
    for phase, runs in results.items():
        latencies = [x for run in runs for x in run["latencies"]]
        statuses = {}
        for run in runs:
            for status, n in run["statuses"].items():
                statuses[status] = statuses.get(status, 0) + n
        p50, p99 = percentiles(latencies)
        summary[phase] = p99
        print(
            f"  B {phase:<6} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  statuses {dict(sorted(statuses.items()))}"
        )
    statuses, sent, elapsed = {}, 0, 0.0
    for run in floods:
        sent += run["sent"]
        elapsed += run["elapsed"]
        for status, n in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    print(
        f"  flooder: sent {sent} ({sent / elapsed:.0f}/s), statuses {dict(sorted(statuses.items()))}, "
        f"let through {statuses.get(200, 0) / elapsed:.0f}/s"
    )
    ratio = summary["flood"] / summary["idle"]
    print(
        f"B's p99 under the flood / idle: {ratio:.2f}x ({'within' if ratio <= 2 else 'OVER'} the 2x target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
