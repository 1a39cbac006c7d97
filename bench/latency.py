"""Latency, throughput and CPU per request of the whole path, against a naive one-process server, on wrk.

    python -m bench.latency --model-dir DIR      # make bench: its own TorchServe + web app + naive server
    python -m bench.latency --duration 3 --clients 1 16
    python -m bench.latency --running            # the `make serve` + `make web` stack (run/, ports 8080.., 5500)

Its own stack's web app has tests/stack.py's raised rate limits (/predict and /read); a --running one has its
own (WEB_RATE_LIMITS): the defaults refuse one client's load, and the 429s count as errors.

Every request carries the page's body, a canvas data URL of a held-out pen digit (bench/canvas_body.py).
Six targets, each at 1 and 16 clients (closed loop, one keep-alive connection each: wrk, bench/toolkit.py):
  web     POST <web>/predict (text/plain), through the aiohttp proxy;
  read    POST <web>/read (text/plain), the same way, of a 4-digit number written apart on 560x280;
  strokes POST <web>/read (application/json) of the same number with its strokes, as the page sends it;
  direct  POST <inference>/predictions/mnist with the inference key, application/octet-stream;
  naive   POST /predict on bench/naive_server.py (same preprocessing, same model, no TorchServe);
  flask   POST /predict on bench/flask_baseline.py: the design this project started from (its error-free
          throughput is what the stack's is compared with).
Server-side: TorchServe's counters, its handler times and each process's CPU.
Paired p50s alternate 1-client 1 s runs over the targets (all see the same moments of a noisy machine).
At the end, every target in one table (docs/performance.md), with CPU per /read over CPU per /predict."""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import naive_server, toolkit
from bench.canvas_body import canvas_data_url, number_data_url
from tests.stack import ROOT, post

CPU_PARTS = ("client", "web", "frontend", "workers", "naive", "flask")
BASELINES = ("naive", "flask")  # servers of their own, not the stack
STACK_PARTS = ("web", "frontend", "workers")  # what serving a prediction costs; not the load generator
# The parser names every counter sample ..._total (TorchServe exposes these two without it).
TS_LATENCIES = ("ts_queue_latency_microseconds_total", "ts_inference_latency_microseconds_total")
HEADER = (
    f"{'target':<7}{'clients':>8}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7} |"
    f" CPU ms/req: {' '.join(f'{p:>8}' for p in CPU_PARTS)}{'total':>7} |"
    f" {'queue ms':>8} {'TS ms':>6} {'handler ms/img':>14} {'batch':>5}"
)
LEGEND = """CPU ms/req: CPU time of each process over the run / requests (client = wrk). queue ms, TS ms: TorchServe's
ts_queue_latency_microseconds and ts_inference_latency_microseconds (includes the queue) per request; handler ms/img: HandlerTime
per batch / images in it (ts_log.log); batch: images per batch (the web app's requests carry several: web/batching.py);
for web and read an image is a drawing (read: one 4-digit number, all its digits in one handler call)."""


def measure(target: str, url: str, headers: dict, body: bytes, clients: int, args, stack: dict) -> dict:
    """One wrk run, with the stack's CPU, TorchServe's counters and the handler's log around it."""
    served, log = target not in BASELINES, stack["run_dir"] / "logs" / "ts_log.log"
    before = toolkit.prometheus(stack["metrics"]) if served else {}
    via_web = target in ("web", "read", "strokes")
    web_before = toolkit.prometheus(stack["web"]) if via_web else {}
    offset, cpu = log.stat().st_size, toolkit.cpu_seconds(stack["pids"])
    run = toolkit.wrk(url, body, headers, clients, args.duration)
    used = {name: s - cpu[name] for name, s in toolkit.cpu_seconds(stack["pids"]).items()}
    used["client"] = run.client_cpu
    row = {"target": target, "clients": clients, "run": run, "server": None}
    row["cpu"] = {name: s * 1000 / max(1, run.requests) for name, s in used.items()}
    after = toolkit.prometheus(stack["metrics"]) if served else {}
    requests = after.get("ts_inference_requests_total", 0) - before.get("ts_inference_requests_total", 0)
    if requests:
        handler_ms, batch = toolkit.handler_times(log, offset)
        if via_web:  # the web app packs drawings into requests (web/batching.py): per drawing
            web_after = toolkit.prometheus(stack["web"])
            sent = web_after["digit_batch_size_count"] - web_before.get("digit_batch_size_count", 0)
            drawings = web_after["digit_batch_size_sum"] - web_before.get("digit_batch_size_sum", 0)
            if sent:
                handler_ms, batch = handler_ms * sent / drawings, batch * drawings / sent
        queue, inference = ((after[n] - before[n]) / requests / 1000 for n in TS_LATENCIES)
        row["server"] = f"{queue:8.2f} {inference:6.2f} {handler_ms:14.3f} {batch:5.1f}"
    return row


def print_row(row: dict) -> None:
    run, cpu = row["run"], row["cpu"]
    server = row["server"] or f"{'-':>8} {'-':>6} {'-':>14} {'-':>5}"
    parts = " ".join(f"{cpu.get(part, 0.0):8.3f}" for part in CPU_PARTS)
    print(
        f"{row['target']:<7}{row['clients']:>8}{run.rps:7.0f}{run.p50:8.2f}{run.p99:8.2f}{run.errors:>7} |"
        f"             {parts}{sum(cpu.values()):7.3f} | {server}",
        flush=True,
    )


def paired(urls: dict, rounds: int) -> dict:
    """p50 per target, ms: the median over `rounds` rounds of 1-client, 1 s runs, the targets in turn."""
    runs = {name: lambda u=urls[name]: toolkit.wrk(u[0], u[2], u[1], 1, 1).p50 for name in urls}
    p50 = {name: statistics.median(values) for name, values in toolkit.alternate(runs, rounds).items()}
    figures = ", ".join(f"{name} {ms:.2f} ms" for name, ms in p50.items())
    print(f"paired, 1 client, {rounds} rounds of 1 s runs in turn: median p50 {figures}")
    return p50


def handler_ms(model_dir: Path, body: bytes) -> float:
    """handle() in this process, ms per image at batch 4 (median of 200), one thread as in the workers."""
    seconds = toolkit.handle_seconds(toolkit.handler(model_dir), [{"data": body}] * 4, 200)
    return statistics.median(seconds) * 1000 / 4


def stack_cpu(row: dict) -> float:
    """CPU ms per request of the serving processes (web+frontend+workers)."""
    return sum(row["cpu"][part] for part in STACK_PARTS)


def targets_table(rows: dict, p50: dict, handler: float, cold_start: float | None) -> int:
    """Every target in one table (what, measured, limit, met: `met`); the ratios after it for information."""
    web16, read16, table = rows.get(("web", 16)), rows.get(("read", 16)), []
    if web16:
        table += [
            ("CPU per prediction, web, 16 clients (web+frontend+workers)", stack_cpu(web16), 0.7, "ms"),
            ("web p99, 16 clients", web16["run"].p99, 15, "ms"),
            ("web errors", web16["run"].errors, 0, ""),
        ]
    if web16 and read16:  # issue 27: a 4-digit /read costs at most 4 single /predicts
        read_over_predict = stack_cpu(read16) / stack_cpu(web16)
        table += [
            ("CPU per /read (4 digits) / CPU per /predict, 16 clients", read_over_predict, 4, "x"),
            ("read errors", read16["run"].errors, 0, ""),
        ]
    if web16 and (strokes16 := rows.get(("strokes", 16))):  # issue 42: strokes cost no more than the picture
        table += [
            (
                "CPU per /read with strokes / CPU per /predict, 16 clients",
                stack_cpu(strokes16) / stack_cpu(web16),
                4,
                "x",
            ),
            ("read with strokes errors", strokes16["run"].errors, 0, ""),
        ]
    if web16 and (flask16 := rows.get(("flask", 16))):  # issue 40: error-free, over the starting design's
        ratio = error_free_rps(web16["run"]) / max(error_free_rps(flask16["run"]), 1e-9)
        table.append(("error-free throughput, web / flask baseline, 16 clients", ratio, -5, "x"))
    if {"web", "naive"} <= p50.keys():
        tax = p50["web"] - p50["naive"]
        table.append(("architecture tax: web p50 - naive p50, 1 client, paired", tax, 1.5, "ms"))
    table.append(("handle() in-process, batch 4, per image", handler, 0.5, "ms"))
    if cold_start is not None:
        table.append(("cold start: `tsctl start` to the first answer", cold_start, 5, "s"))
    print(f"{'target':<58}{'measured':>11}{'limit':>11}  met")
    for what, figure, limit, unit in table:
        bound = f">= {-limit:g}" if limit < 0 else f"<= {limit:g}"
        print(
            f"{what:<58}{figure:>8.2f} {unit:<2}{bound:>8} {unit:<2} {'yes' if met(figure, limit) else 'NO'}"
        )
    if {"web", "direct"} <= p50.keys():
        over = p50["web"] - p50["direct"]
        print(f"info  web app over direct TorchServe, 1 client, paired: +{over:.2f} ms p50")
    if (web1 := rows.get(("web", 1))) and (read1 := rows.get(("read", 1))):
        print(f"info  CPU per /read / CPU per /predict, 1 client: {stack_cpu(read1) / stack_cpu(web1):.2f}x")
    for name in ("direct", "naive"):
        if web16 and (other := rows.get((name, 16))):
            print(f"info  web/{name} throughput, 16 clients: {web16['run'].rps / other['run'].rps:.2f}")
    return 0 if all(met(figure, limit) for _, figure, limit, _ in table) else 1


def met(figure: float, limit: float) -> bool:
    """A limit is a ceiling; a negative one is a floor of its opposite (throughput at least 5x: -5)."""
    return figure >= -limit if limit < 0 else figure <= limit


def error_free_rps(run: toolkit.Run) -> float:
    return (run.requests - run.errors) / run.seconds


def check_answer(url: str, body: bytes, headers: dict, key: str = "digit", meant: str | None = None) -> None:
    """One request first: a target that does not answer (a digit; read: the number meant) is said so, not
    measured in silence."""
    status, answer = post(url, body, None, headers)
    if answer.get(key) is None or meant not in (None, answer.get(key)):
        print(f"  {url}: unexpected answer {status} {str(answer)[:200]}", file=sys.stderr)


@contextlib.contextmanager
def stack_under_test(args, workdir: Path):
    """Its own stack (or the running one): yields its (web, inference, metrics) URLs, run dir, the web
    app's pid and the cold start in s (None for the running one)."""
    if not args.running:
        with toolkit.own_stack(args.model_dir, workdir=workdir) as stack:
            urls = (stack.web_url, stack.inference_url, stack.metrics_url)
            yield urls, stack.run_dir, stack.web.pid, stack.cold_start
        return
    run_dir = args.run_dir.resolve()
    props = dict(re.findall(r"^(\w+)=(.*)$", (run_dir / "config.properties").read_text(), re.M))
    port = int(os.environ.get("WEB_PORT", 5500))
    listening = psutil.net_connections(kind="tcp")
    web_pid = next((c.pid for c in listening if c.status == "LISTEN" and c.laddr.port == port), None)
    urls = (f"http://127.0.0.1:{port}", props["inference_address"], props["metrics_address"])
    yield urls, run_dir, web_pid, None


def run(args, workdir: Path) -> int:
    flask_dir = workdir / "flask"  # where the baseline writes its temp.jpg
    flask_dir.mkdir()
    with (
        stack_under_test(args, workdir) as ((web, inference, metrics), run_dir, web_pid, cold_start),
        naive_server.serving(args.model_dir, workdir / "naive.log") as (naive, naive_pid),
        naive_server.serving(args.model_dir, flask_dir / "flask.log", "bench.flask_baseline") as (
            flask,
            flask_pid,
        ),
    ):
        key = json.loads((run_dir / "key_file.json").read_text())["inference"]["key"]
        plain, direct = {"Content-Type": "text/plain"}, {"Content-Type": "application/octet-stream"}
        auth = {**direct, "Authorization": f"Bearer {key}"}
        urls = {
            "direct": (inference + "/predictions/mnist", auth, args.body),
            "web": (web + "/predict", plain, args.body),
            "read": (web + "/read", plain, args.number),
            "strokes": (web + "/read", {"Content-Type": "application/json"}, args.strokes),
            "naive": (naive, plain, args.body),
            "flask": (flask, plain, args.body),
        }
        urls = {target: urls[target] for target in args.targets}
        frontend = toolkit.frontend_pid(run_dir)
        pids = {"web": (web_pid, "self"), "frontend": (frontend, "self")}
        pids |= {"workers": (frontend, "descendants"), "naive": (naive_pid, "self")}
        pids["flask"] = (flask_pid, "self")
        state = {"run_dir": run_dir, "metrics": metrics, "web": web, "pids": pids}
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
        print(
            f"body: {len(args.body)} B canvas data URL; read: {len(args.number)} B, the number {args.label};"
            f" {args.duration} s per run after {args.settle} s settling"
        )
        print(f"model: {args.model_dir}; load generator: {version}; {os.cpu_count()} cores")
        if cold_start is not None:
            print(f"cold start: {cold_start:.1f} s from `tsctl start` to the first answer")
        for target, (url, headers, body) in urls.items():
            if target != "flask":  # it answers the digit as text, from untrained weights
                meant = ("number", args.label) if target in ("read", "strokes") else ()
                check_answer(url, body, headers, *meant)
            if args.settle:  # a fresh JVM compiles its hot paths in the first seconds: unmeasured load first
                toolkit.wrk(url, body, headers, max(args.clients), args.settle)
        print(HEADER)
        rows = {}
        for clients in args.clients:
            for target, (url, headers, body) in urls.items():
                rows[target, clients] = measure(target, url, headers, body, clients, args, state)
                print_row(rows[target, clients])
                time.sleep(args.pause)
        print(LEGEND)
        p50 = paired(urls, args.rounds)
        return targets_table(rows, p50, handler_ms(args.model_dir, args.body), cold_start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model-dir", type=Path, default=toolkit.DEFAULT_MODEL_DIR)
    add("--clients", type=int, nargs="+", default=[1, 16])
    targets = ["direct", "web", "read", "strokes", "naive", "flask"]
    add("--targets", nargs="+", default=targets, choices=targets)
    add("--duration", type=int, default=8, help="measured seconds per run (whole seconds: wrk's unit)")
    add("--settle", type=int, default=3, help="unmeasured seconds of load per target first")
    add("--pause", type=float, default=0.5, help="seconds between runs (queues drain)")
    add("--rounds", type=int, default=8, help="paired rounds of 1 s per target")
    add("--digit", type=int, default=0, help="which held-out pen digit to send")
    add("--running", action="store_true", help="measure the running make serve/web stack")
    add("--run-dir", type=Path, default=ROOT / "run", help="with --running: its run dir")
    add("--workdir", type=Path, default=None, help="where its own stack's run dir goes")
    args = parser.parse_args()
    args.model_dir = args.model_dir.resolve()
    if not (args.model_dir / "model.pt").exists():
        print(f"error: {args.model_dir}/model.pt not found: `make train` or --model-dir DIR", file=sys.stderr)
        return 2
    toolkit.require()
    args.body = canvas_data_url(args.digit)
    args.number, args.label = number_data_url(4)
    args.strokes, _ = number_data_url(4, strokes=True)
    return run(args, Path(tempfile.mkdtemp(prefix="bench-", dir=args.workdir)))


if __name__ == "__main__":
    sys.exit(main())
