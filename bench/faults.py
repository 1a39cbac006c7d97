"""Faults beside good traffic: what one request (or a dying worker) costs the others.

    python -m bench.faults                      # make bench-faults: every scenario, 15 s phases
    python -m bench.faults --seconds 3 --only hostile readyz

A real stack (bench/toolkit.py own_stack, the tests' raised rate limits but /readyz's own). Each scenario runs its good
traffic alone ("idle") and beside the fault, in turn (--rounds, toolkit.alternate), and prints the good
requests lost (anything but 200) and their p50/p99 in both, with the web app's CPU seconds:
  hostile  400 good drawings at 8 concurrent; beside them 4 clients from 127.0.0.2 sending `[` * 5000
           (JSON nested past the parser) to /predict and /read, as fast as they are answered;
  kill     16 clients for --seconds; beside them the TorchServe worker SIGKILLed every --kill-every s
           (once its replacement is ready): lost drawings, and the wait of those caught (docs/limits.md);
  readyz   8 clients for --seconds; beside them wrk flooding /readyz on 32 connections: the p99 ratio,
           and the requests TorchServe got meanwhile (web/readiness.py: a probe every 2 s at most);
  uploads  8 clients for --seconds; beside them 200 connections from 127.0.0.2 each uploading 1 MiB at
           2 KiB/s (web/uploads.py: 503 past the bytes in flight, 408 at the deadline), again a second
           after each answer (its Retry-After): the web app's RSS at the start and at its peak too.
"""

import argparse
import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench import toolkit
from bench.canvas_body import canvas_data_url
from tests.clients import SLOW_UPLOAD_HEAD, Client
from tests.stack import RATE_LIMITS

HOSTILE = b"[" * 5000


def good(url: str, body: bytes, clients: int, seconds: float = 0, each: int = 0) -> dict:
    """`clients` keep-alive clients POSTing body, closed loop, `each` requests or for `seconds`."""
    latencies, statuses, lock, end = [], Counter(), threading.Lock(), time.monotonic() + seconds

    def run(_) -> None:
        client, n = Client(url), 0
        while (n < each) if each else (time.monotonic() < end):
            started = time.perf_counter()
            status, _ = client.predict(body)
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - started)
            n += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    return {"latencies": latencies, "statuses": statuses}


def beside(fault, load) -> dict:
    """load() while fault(stop) runs in a thread; the load's figures with the fault's report."""
    stop, report = threading.Event(), {}
    thread = threading.Thread(target=lambda: report.update(fault(stop)))
    thread.start()
    time.sleep(0.3)  # the fault under way before the load measures
    try:
        return {**load(), "fault": report}
    finally:
        stop.set()
        thread.join()


def hostile(url: str):
    def fault(stop: threading.Event) -> dict:
        def attack(n: int) -> Counter:
            client, seen = Client(url, "127.0.0.2"), Counter()
            while not stop.is_set():
                seen[client.predict(HOSTILE, "/read" if n % 2 else "/predict")[0]] += 1
            return seen

        with ThreadPoolExecutor(4) as pool:
            return {"hostile statuses": dict(sum(pool.map(attack, range(4)), Counter()))}

    return fault


def kill(stack, every: float):
    def fault(stop: threading.Event) -> dict:
        kills, waits = 0, []
        while not stop.wait(every):
            (victim,) = stack.worker_pids()
            os.kill(victim, signal.SIGKILL)
            kills, killed = kills + 1, time.monotonic()
            while not stop.is_set() and stack.ready_worker_pids() in (set(), {victim}):
                time.sleep(0.1)
            waits.append(round(time.monotonic() - killed, 1))
        return {"kills": kills, "replacement ready after s": waits}

    return fault


def readyz(stack, seconds: float):
    def fault(stop: threading.Event) -> dict:
        toolkit.require()
        before = toolkit.prometheus(stack.metrics_url).get("ts_inference_requests_total", 0)
        command = ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds + 1))}s", stack.web_url + "/readyz"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        asked = toolkit.prometheus(stack.metrics_url).get("ts_inference_requests_total", 0) - before
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {
            "/readyz answered": int(re.search(r"(\d+) requests in", out)[1]),
            "not 2xx": int(non_2xx[1]) if non_2xx else 0,
            "requests at TorchServe (the flood's and the good ones')": int(asked),
        }

    return fault


def uploads(stack, connections: int = 200):
    port, web = int(stack.web_url.rsplit(":", 1)[1]), psutil.Process(stack.web.pid)

    async def one(stop: threading.Event, seen: Counter) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
                writer.write(SLOW_UPLOAD_HEAD)
                answer = asyncio.ensure_future(reader.readline())
                while not stop.is_set() and not (await asyncio.wait({answer}, timeout=1))[0]:
                    writer.write(b"d" * 2048)  # 2 KiB/s: 1 MiB would take 8.5 minutes
                seen[int(answer.result().split()[1]) if answer.done() else "unanswered"] += 1
                answer.cancel()
                writer.close()
            except (OSError, IndexError, ValueError):
                seen["connection failed"] += 1
            await asyncio.sleep(1)  # Retry-After: slow uploads again, not a flood of refused ones

    def fault(stop: threading.Event) -> dict:
        seen, peak = Counter(), [web.memory_info().rss]

        async def run():
            async def watch():
                while not stop.is_set():
                    peak.append(web.memory_info().rss)
                    await asyncio.sleep(0.2)

            await asyncio.gather(watch(), *(one(stop, seen) for _ in range(connections)))

        asyncio.run(run())
        mb = [round(rss / 2**20, 1) for rss in (peak[0], max(peak))]
        return {"upload statuses": dict(seen), "web app RSS MB at start, at peak": mb}

    return fault


def measure(stack, name: str, load, fault, rounds: int) -> None:
    """The load alone and beside the fault, in turn: good requests lost, p50/p99, the web app's CPU."""

    def cpu(run) -> dict:
        before = toolkit.cpu_seconds({"web": (stack.web.pid, "self")})["web"]
        return {**run(), "web cpu": toolkit.cpu_seconds({"web": (stack.web.pid, "self")})["web"] - before}

    runs = toolkit.alternate(
        {"idle": lambda: cpu(load), "fault": lambda: cpu(lambda: beside(fault, load))}, rounds
    )
    print(f"{name}:", flush=True)
    p99 = {}
    for phase, results in runs.items():
        statuses = sum((r["statuses"] for r in results), Counter())
        p50, p99[phase] = (
            x * 1000 for x in toolkit.percentiles([x for r in results for x in r["latencies"]], 50, 99)
        )
        lost, seconds = sum(statuses.values()) - statuses[200], sum(r["web cpu"] for r in results)
        print(f"  {phase:<6} good lost {lost:4d} of {sum(statuses.values()):5d}  p50 {p50:7.1f} ms"
              f"  p99 {p99[phase]:7.1f} ms  web app CPU {seconds:5.1f} s  {dict(statuses) if lost else ''}")  # fmt: skip
    for result in runs["fault"]:
        print(f"  fault: {result['fault']}")
    print(f"  p99 beside the fault / idle: {p99['fault'] / p99['idle']:.2f}x", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=toolkit.DEFAULT_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=15, help="each phase of kill, readyz, uploads")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=5)
    parser.add_argument("--only", nargs="+", choices=["hostile", "kill", "readyz", "uploads"])
    args = parser.parse_args()
    body, s = canvas_data_url(0), args.seconds
    # The tests' raised limits, so that the good clients are never refused, but /readyz's own (10 a second,
    # web/ratelimit.py): what a flood of it meets in a pod.
    limits = RATE_LIMITS.replace("/readyz=100000:100000", "/readyz=10:20")
    with toolkit.own_stack(args.model_dir, WEB_RATE_LIMITS=limits) as stack:
        url = stack.web_url
        scenarios = {
            "hostile": (lambda: good(url, body, 8, each=50), hostile(url)),
            "kill": (lambda: good(url, body, 16, s), kill(stack, args.kill_every)),
            "readyz": (lambda: good(url, body, 8, s), readyz(stack, s)),
            "uploads": (lambda: good(url, body, 8, s), uploads(stack)),
        }
        good(url, body, 8, 1)  # warm-up
        for name, (load, fault) in scenarios.items():
            if not args.only or name in args.only:
                measure(stack, name, load, fault, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
