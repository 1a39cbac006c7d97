"""One pod's capacity: closed-loop load with wrk through the pod's published web port (bench/toolkit.py,
the page's canvas data URL), the CPU each container spends per request, and its memory.

    make image && make deploy-local && python -m bench.pod_capacity     # the pod of `make deploy-local`
    python -m bench.pod_capacity --url http://127.0.0.1:5500 --pod digit-recognizer-pod-0 --clients 1 4 16

Capacity is the highest throughput whose p99 stays within --p99-ms (25). CPU per request comes from the
containers' processes (host pids: rootful podman), memory from `podman stats`. The load generator runs on
the same machine and competes with the pod for its cores, as in bench/latency.py; nothing here asserts.
"""

import argparse
import json
import math
import os
import subprocess
import time

from bench.canvas_body import canvas_data_url
from bench.toolkit import PLAIN, cpu_seconds, require, wrk

CONTAINERS = ("torchserve", "web")


def container_pid(pod: str, container: str) -> int:
    command = ["podman", "inspect", "--format", "{{.State.Pid}}", f"{pod}-{container}"]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def memory_mib(pod: str) -> dict:
    """Each container's memory as `podman stats` reports it (its cgroup's usage), in MiB."""
    names = [f"{pod}-{c}" for c in CONTAINERS]
    command = ["podman", "stats", "--no-stream", "--format", "json", *names]
    stats = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    # podman prints decimal units (go-units' HumanSize: 1 MB = 10^6 bytes); binary ones are taken too.
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    result = {}
    for entry in stats:
        used = entry["mem_usage"].split("/")[0].strip()
        number = float(used.rstrip("kMGiB"))
        unit = used[len(used.rstrip("kMGiB")) :] or "B"
        result[entry["name"].removeprefix(f"{pod}-")] = number * units[unit] / 2**20
    return result


def measure(args) -> None:
    # Each container's processes and their live descendants (TorchServe's frontend and workers).
    pids = {c: (container_pid(args.pod, c), "tree") for c in CONTAINERS}
    body, headers = canvas_data_url(), PLAIN
    url = args.url + "/predict"
    print(f"pod {args.pod} at {args.url}; {os.cpu_count()} cores shared with the load generator")
    print(f"memory before load (MiB): {memory_mib(args.pod)}")
    # A fresh JVM compiles its hot paths in the first seconds: load it once, unmeasured.
    wrk(url, body, headers, max(args.clients), args.settle)
    print(f"{'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} | CPU ms/request: "
          f"{'torchserve':>10} {'web':>6} {'pod':>6}")  # fmt: skip
    rows = []
    for clients in args.clients:
        before = cpu_seconds(pids)
        r = wrk(url, body, headers, clients, args.duration)
        used = {c: (s - before[c]) * 1000 / max(1, r.requests) for c, s in cpu_seconds(pids).items()}
        cpu = sum(used.values())
        rows.append((clients, r.rps, r.p99, cpu))
        print(f"{clients:>7} {r.rps:7.0f} {r.p50:7.2f} {r.p99:7.2f} {r.errors:>6} | "
              f"{'':>16}{used['torchserve']:10.3f} {used['web']:6.3f} {cpu:6.3f}", flush=True)  # fmt: skip
        time.sleep(1)
    memory = memory_mib(args.pod)
    print("memory after load (MiB): " + ", ".join(f"{c} {m:.0f}" for c, m in memory.items()))
    within = [row for row in rows if row[2] <= args.p99_ms]
    if within:
        clients, rps, p99, cpu = max(within, key=lambda row: row[1])
        print(f"capacity on this machine: {rps:.0f} req/s with p99 {p99:.1f} ms <= {args.p99_ms:g} ms "
              f"({clients} clients), {cpu:.2f} ms of CPU per request")  # fmt: skip
    else:
        print(f"no load level kept p99 within {args.p99_ms:g} ms on this machine")
    # Sizing from CPU per request at the busiest level (full batches), which a busy machine distorts
    # less than throughput: a pod's requested cores at the HPA's target utilization.
    cpu = max(rows, key=lambda row: row[1])[3]
    per_pod = args.pod_cores * args.target_utilization * 1000 / cpu
    print(f"sizing: {cpu:.2f} ms CPU/request; a pod ({args.pod_cores:g} cores requested) at the HPA's "
          f"{args.target_utilization:.0%} target serves ~{per_pod:.0f} req/s; memory per pod "
          f"{sum(memory.values()):.0f} MiB")  # fmt: skip
    for demand in args.demand:
        print(
            f"  {demand:>6g} req/s -> {max(2, math.ceil(demand / per_pod))} pods (the HPA keeps at least 2)"
        )
    pod_hour = args.pod_cores * args.core_hour_price
    per_million = pod_hour / (per_pod * 3600) * 1e6
    print(f"cost: {args.pod_cores:g} cores x ${args.core_hour_price}/core-hour = ${pod_hour:.3f} per pod-hour; "
          f"${per_million:.3f} per million predictions at the target")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:5500")
    parser.add_argument("--pod", default="digit-recognizer-pod-0")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24])
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per load level")
    parser.add_argument("--settle", type=int, default=5, help="unmeasured load first (JVM warm-up)")
    parser.add_argument("--p99-ms", type=float, default=25.0)
    parser.add_argument("--target-utilization", type=float, default=0.6, help="the HPA's CPU target")
    parser.add_argument(
        "--pod-cores", type=float, default=1.8, help="the pod's CPU request (kubernetes.yaml)"
    )
    parser.add_argument("--core-hour-price", type=float, default=0.05, help="USD per core-hour")
    parser.add_argument("--demand", type=float, nargs="+", default=[100, 1000, 5000, 20000])
    require()
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
