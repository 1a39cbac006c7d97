"""One client floods /predict at 4x its rate limit; another, from another address, should not notice.

    python -m bench.flood                        # make bench-flood: limits scaled to this stack, 15 s phases
    python -m bench.flood --shipped-limits       # the shipped defaults, whatever this machine's capacity
    python -m bench.flood --seconds 10 --rounds 1

A real stack (TorchServe + the web app, tests/stack.py). The shipped /predict limit is a tenth of a
pod's capacity measured on a quiet machine (docs/limits.md); this machine's capacity varies severalfold
with its neighbours, and the same 150/s is a third of a slow moment's. So by default the run first
measures this stack's capacity (wrk, 16 connections, no limits) and applies the defaults' rule to it: a
tenth of it, burst 2 s of that rate (--shipped-limits keeps the shipped numbers). The second client
("B", bench/toolkit.py steady) sends canvases from 127.0.0.2 (its socket bound to that local address;
the web app listens on 127.0.0.1) at a steady rate under its limit, open loop; it runs alone
("idle"), then beside the flooder ("flood"): wrk (bench/flood.lua) sending from 127.0.0.1 at about 4x
the /predict limit. Phases alternate (--rounds, bench/toolkit.py alternate) so both see the same moments
of a noisy machine.
Printed: B's p50/p99 in each phase and their ratio (issue 28: p99 within 2x of idle), and what the
flooder got (answers, 429s, the rate let through).
"""

import argparse
import time
from collections import Counter
from pathlib import Path

from bench.canvas_body import canvas_data_url
from bench.toolkit import (
    DEFAULT_MODEL_DIR,
    alternate,
    own_stack,
    percentiles,
    steady,
    wrk,
    wrk_json,
    wrk_start,
)
from web.ratelimit import DEFAULT_LIMITS, Limit

CAPACITY_SHARE = 0.1  # the defaults' rule (docs/limits.md): one client gets at most a tenth of a pod
# The flooder: wrk (C, one thread: far cheaper per request than a Python client on 2 shared cores) from
# 127.0.0.1, CONNECTIONS connections each pausing so that together they send about the flood's rate
# (bench/flood.lua): at random moments, or in lockstep (all at once, every CONNECTIONS / rate s).
CONNECTIONS = 32  # closed loop with a pause each: enough of them that slow answers still leave ~the rate


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
    body = canvas_data_url(0)
    with own_stack(args.model_dir, web=False) as stack:
        body_file = stack.run_dir / "canvas.txt"
        body_file.write_bytes(body)
        predict, capacity = DEFAULT_LIMITS["/predict"], None
        if not args.shipped_limits:  # this stack's capacity (the tests' raised limits) and the rule on it
            stack.start_web()
            capacity = wrk(stack.web_url + "/predict", body, {}, 16, 5).rps
            stack.stop_web()
            predict = Limit(CAPACITY_SHARE * capacity, 2 * CAPACITY_SHARE * capacity)
        flood_rate = args.flood * predict.rate
        args.rate = args.rate or predict.rate / 2
        # The shipped defaults for every route; /predict's scaled unless --shipped-limits.
        stack.start_web(WEB_RATE_LIMITS=f"/predict={predict.rate:.1f}:{predict.burst:.1f}")
        pause_ms = f"{CONNECTIONS * 1000 / flood_rate:.2f}"

        def idle() -> dict:  # client B alone
            return steady(stack.web_url, body, args.rate, args.seconds, 64, "127.0.0.2")

        def flood() -> dict:  # client B beside the flooder, and what the flooder got
            lockstep = ["lockstep"] if args.lockstep else []
            url, seconds = stack.web_url + "/predict", args.seconds + 1
            flooder = wrk_start(url, body_file, CONNECTIONS, seconds, "flood.lua", pause_ms, *lockstep)
            time.sleep(0.5)  # the flood is under way before B measures
            return {**idle(), "flooder": wrk_json(flooder)}

        steady(stack.web_url, body, args.rate, 2, 8, "127.0.0.2")  # warm-up
        results = alternate({"idle": idle, "flood": flood}, args.rounds)
    if capacity:
        print(f"this stack's capacity: {capacity:.0f} req/s (wrk, 16 connections): the limit is a tenth")
    print(
        f"/predict limit {predict.rate:.0f}/s (burst {predict.burst:.0f}) per client; client B from 127.0.0.2 at {args.rate:g}/s;"
    )
    print(
        f"the flooder from 127.0.0.1 at {flood_rate:.0f}/s ({args.flood:g}x the limit, {'in lockstep' if args.lockstep else 'at random moments'}); {args.rounds} x {args.seconds:g} s per phase"
    )
    p99 = {}
    for phase, runs in results.items():
        p50, p99[phase] = (ms * 1000 for ms in percentiles([x for r in runs for x in r["latencies"]], 50, 99))
        statuses = sum((r["statuses"] for r in runs), Counter())
        print(
            f"  B {phase:<6} p50 {p50:6.2f} ms  p99 {p99[phase]:6.2f} ms  statuses {dict(sorted(statuses.items()))}"
        )
    floods = [r["flooder"] for r in results["flood"]]
    sent, elapsed = sum(f["requests"] for f in floods), sum(f["duration_us"] / 1e6 for f in floods)
    statuses = sum((Counter({int(k): v for k, v in f["statuses"].items()}) for f in floods), Counter())
    print(
        f"  flooder: sent {sent} ({sent / elapsed:.0f}/s), statuses {dict(sorted(statuses.items()))}, "
        f"let through {statuses.get(200, 0) / elapsed:.0f}/s"
    )
    ratio = p99["flood"] / p99["idle"]
    print(
        f"B's p99 under the flood / idle: {ratio:.2f}x ({'within' if ratio <= 2 else 'OVER'} the 2x target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
