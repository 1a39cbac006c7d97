"""What the benchmarks share: load, CPU seconds of processes, what the stack reports, percentiles,
paired alternating runs, a stack of their own and the handler in this process (the body they post is
bench/canvas_body.py's).

Load: wrk, the field's closed-loop load generator (C: far less CPU per request than a Python client on
2 cores, where the client competes with the servers), running bench/post.lua (one body on every
keep-alive connection) or bench/flood.lua (paced connections); beside it the one Python client,
tests/clients.py's Client (a keep-alive connection, like a browser tab), which steady() paces.
"""

import contextlib
import json
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import Client
from tests.stack import ROOT, Stack, archive

DEFAULT_MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "build" / "convnet"))
PLAIN = {"Content-Type": "text/plain"}


@dataclass
class Run:
    requests: int  # answered, including errors
    seconds: float
    p50: float  # ms
    p99: float  # ms
    errors: int  # socket errors, timeouts and HTTP status > 399
    client_cpu: float  # CPU seconds wrk used

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def require() -> None:
    """Exit with a clear line when wrk is not installed."""
    if not shutil.which("wrk"):
        sys.exit("error: wrk is not installed: sudo apt-get install wrk (see docs/performance.md)")


def wrk_start(url: str, body_file, connections: int, seconds: float, script: str, *args: str):
    """wrk running bench/`script` (one thread, `connections` connections) on url for `seconds`, the
    script's arguments the body's file and `args`; wrk_json() waits for what it prints."""
    require()
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    command += ["-s", str(Path(__file__).with_name(script)), url, "--", str(body_file), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_json(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, out)
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def wrk(url: str, body: bytes, headers: dict, connections: int, seconds: int) -> Run:
    """`connections` keep-alive connections POSTing body to url for `seconds` (whole seconds: wrk's unit),
    each sending its next request as soon as the last answer arrives (bench/post.lua)."""
    with tempfile.NamedTemporaryFile(prefix="wrk-body-") as file:
        file.write(body)
        file.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        named = [f"{k}: {v}" for k, v in headers.items()]
        doc = wrk_json(wrk_start(url, file.name, connections, max(1, round(seconds)), "post.lua", *named))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    p50, p99 = doc["p50_us"] / 1000, doc["p99_us"] / 1000
    return Run(doc["requests"], doc["duration_us"] / 1e6, p50, p99, doc["errors"], cpu)


def steady(url: str, body: bytes, rate: float, seconds: float, in_flight: int, local: str | None = None):
    """Open loop: POST body to url's /predict every 1/rate s from `local`, at most `in_flight` waiting (behind
    schedule when the server is slower than the rate: the next waits for one), each on an idle keep-alive
    Client. {"latencies": s of the 200s, "statuses": {status: count}, "sent", "elapsed": s}."""
    idle, latencies, statuses = queue.LifoQueue(), [], []
    slots = threading.Semaphore(in_flight)

    def one() -> None:
        try:
            client = idle.get_nowait()
        except queue.Empty:
            client = Client(url, local)
        started = time.perf_counter()
        status, _ = client.predict(body)
        latency = time.perf_counter() - started
        idle.put(client)
        slots.release()
        statuses.append(status)
        if status == 200:
            latencies.append(latency)

    with ThreadPoolExecutor(in_flight) as pool:
        start, i = time.perf_counter(), 0
        while (due := start + i / rate) < start + seconds:
            time.sleep(max(0.0, due - time.perf_counter()))
            slots.acquire()
            pool.submit(one)
            i += 1
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get().connection.close()
    return {"latencies": latencies, "statuses": Counter(statuses), "sent": i, "elapsed": elapsed}


def cpu_seconds(processes: dict) -> dict:
    """User + system CPU seconds so far, by name, of {name: (pid, which)}: which is "self" (the process),
    "descendants" (its live descendants: TorchServe's workers under its frontend) or "tree" (both: a
    container's). A pid of None, or a process gone, counts 0."""

    def of(process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            return times.user + times.system
        return 0.0

    seconds = {}
    for name, (pid, which) in processes.items():
        found = []
        with contextlib.suppress(psutil.Error):
            if pid:
                root = psutil.Process(pid)
                found = [root] if which != "descendants" else []
                found += root.children(recursive=True) if which != "self" else []
        seconds[name] = sum(map(of, found), 0.0)
    return seconds


def frontend_pid(run_dir: Path) -> int:
    """TorchServe's frontend (the JVM) of a stack's run dir: its workers are its descendants."""
    return int((run_dir / "tmp" / ".model_server.pid").read_text())


def prometheus(url: str) -> dict:
    """Every sample of url/metrics summed over its labels, by sample name (the parser ends every counter
    sample in _total, also where the text has none)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    totals = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def handler_times(log: Path, offset: int) -> tuple[float, float]:
    """(handler ms per image, images per batch) logged since offset. HandlerTime is a gauge in Prometheus
    (the last batch only); ts_log.log has a [METRICS] line per batch: "HandlerTime.Milliseconds:1.23|...
    |#hostname:vm,<timestamp>,<request id>,<request id>,..." (the default config logs each twice)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    pattern = r"HandlerTime\.\w+:([0-9.]+)\|[^\n]*?#hostname:[^,\n]*,\d+,([^\n]*?),? pattern"
    batches = {ids: float(ms) for ms, ids in re.findall(pattern, text)}
    images = sum(len(ids.split(",")) for ids in batches)
    return (sum(batches.values()) / images, images / len(batches)) if images else (float("nan"),) * 2


def percentiles(values, *qs: float) -> list[float]:
    """np.percentile (linear between ranks) of values at each q; NaN for no values."""
    return [float(np.percentile(values, q)) if len(values) else float("nan") for q in qs]


def alternate(runs: dict, rounds: int) -> dict[str, list]:
    """{name: [what runs[name]() returned, a round each]}: every run once a round, in turn, the order
    reversed every other round (A B C, C B A, ...), so all see the same moments of a noisy machine."""
    results = {name: [] for name in runs}
    for round_ in range(rounds):
        for name in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
            results[name].append(runs[name]())
    return results


@contextlib.contextmanager
def own_stack(model_dir: Path, web: bool = True, workdir: Path | None = None, **web_env: str):
    """A stack of its own serving model_dir as version 1.0 (tests/stack.py: its own run dir and ports):
    TorchServe (stack.cold_start: seconds from `tsctl start` to the first answer), then the web app with
    the tests' raised rate limits (or web_env's settings) unless web=False; stopped on the way out."""
    work = workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    archive(model_dir.resolve(), work / "model_store", "1.0")
    stack = Stack(work / "run", work / "model_store")
    stack.run_dir.mkdir(parents=True)
    started = time.monotonic()
    stack.start_torchserve()  # returns once a real drawing is answered
    stack.cold_start = time.monotonic() - started
    try:
        if web:
            stack.start_web(**web_env)
        yield stack
    finally:
        stack.stop()


@contextlib.contextmanager
def web_app(url: str | None, model_dir: Path):
    """The web app at url, or that of a stack of its own serving model_dir: its URL."""
    if url:
        yield url
        return
    with own_stack(model_dir) as stack:
        yield stack.web_url


def handler(model_dir: Path):
    """The real MnistHandler in this process, on one torch thread as in a worker, with TorchServe's
    context as tests/handler_context.py mocks it (instance.mock_context)."""
    import warnings

    import torch

    from handler.mnist_handler import MnistHandler
    from tests.handler_context import Context

    warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
    torch.set_num_threads(1)
    context = Context(model_dir)
    instance = MnistHandler()
    instance.initialize(context)
    instance.mock_context = context
    return instance


def handle_seconds(instance, rows: list[dict], rounds: int, clock=time.perf_counter) -> list[float]:
    """Seconds of each of `rounds` handle() calls on rows (by `clock`: time.thread_time for CPU time)."""
    seconds = []
    for _ in range(rounds):
        start = clock()
        instance.handle(rows, instance.mock_context)
        seconds.append(clock() - start)
    return seconds
