"""Soak: many clients for a while, a mix of digits; count errors and cross-talk, watch memory.

    python -m bench.soak                       # starts its own stack: 16 clients, 60 s
    python -m bench.soak --clients 16 --duration 60 --url http://127.0.0.1:5500 --run-dir run

Cross-talk: an answer that differs from the answer the same image got when sent alone (another
request's result delivered to this one). Memory: RSS of the web app and of TorchServe (frontend and
workers) at the start and the end.
"""

import argparse
import time
from pathlib import Path

import psutil

from bench.toolkit import DEFAULT_MODEL_DIR, frontend_pid, own_stack, percentiles
from tests.clients import Client, run_soak, soak_images


def time_when_down(url: str, tries: int = 50) -> dict:
    client, body, times, statuses = Client(url), soak_images()[0], [], set()
    for _ in range(tries):
        started = time.perf_counter()
        status, _ = client.predict(body)
        times.append((time.perf_counter() - started) * 1000)
        statuses.add(status)
    return {"statuses": sorted(statuses), "p50": percentiles(times, 50)[0], "max": max(times)}


def stack_memory(web_pid: int | None, run_dir: Path):
    """A function giving the resident memory (MB) of TorchServe's frontend, its workers and the web app."""

    def rss_mb(*processes: psutil.Process) -> float:
        return round(sum(p.memory_info().rss for p in processes) / 2**20, 1)

    def watch() -> dict:
        frontend = psutil.Process(frontend_pid(run_dir))
        memory = {
            "torchserve frontend": rss_mb(frontend),
            "torchserve workers": rss_mb(*frontend.children(recursive=True)),
        }
        if web_pid:
            memory["web app"] = rss_mb(psutil.Process(web_pid))
        return memory

    return watch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--url", help="a running web app (default: start a stack of its own)")
    parser.add_argument("--run-dir", type=Path, default=Path("run"), help="with --url: TorchServe's run dir")
    parser.add_argument("--web-pid", type=int, help="with --url: the web app's pid, to watch its memory")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()

    if args.url:
        report = run_soak(args.url, args.clients, args.duration, stack_memory(args.web_pid, args.run_dir))
    else:
        with own_stack(args.model_dir) as stack:
            watch = stack_memory(stack.web.pid, stack.run_dir)
            report = run_soak(stack.web_url, args.clients, args.duration, watch)
            stack.stop_torchserve()  # then: how fast the web app says so when TorchServe is gone (100 ms)
            report["down_ms"] = time_when_down(stack.web_url)
    print(f"{report['clients']} clients, {report['seconds']} s: {report['requests']} requests "
          f"({report['requests_per_second']}/s), {report['errors']} errors, {report['cross_talk']} cross-talk")  # fmt: skip
    for name, start in report["memory_start"].items():
        end = report["memory_end"][name]
        print(f"  RSS {name:<20} {start:8.1f} MB -> {end:8.1f} MB ({end - start:+.1f})")
    if "down_ms" in report:
        down = report["down_ms"]
        print(
            f"  TorchServe stopped: {down['statuses']} in p50 {down['p50']:.1f} ms, max {down['max']:.1f} ms"
        )
    for example in report["examples"]:
        print("  example:", example)


if __name__ == "__main__":
    main()
