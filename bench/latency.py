"""Latency and throughput of the whole path, against a naive one-process server, in one run.

    python -m bench.latency                      # starts its own TorchServe + web app + naive server
    python -m bench.latency --duration 3 --clients 1 16
    python -m bench.latency --running            # the `make serve` + `make web` stack (run/, ports 8080.., 5500)

Every request carries the same body the page sends: a canvas data URL (280x280 PNG, RGBA, dark ink on
white) of a held-out pen digit rendered by train/pendigits.py. Three targets, each at 1 and 16 clients:
  web     POST <web>/predict (text/plain), through the aiohttp proxy;
  direct  POST <inference>/predictions/mnist with the inference key, application/octet-stream;
  naive   POST /predict on bench/naive_server.py (same preprocess.py, same model, no TorchServe).
Each simulated client is one keep-alive connection sending its next request as soon as the last answer
arrives (closed loop). The load generator writes pre-built requests on raw asyncio streams: on 2 cores
the client competes with the servers, and aiohttp's client costs ~3x more CPU per request (its cost is
printed: --client aiohttp to compare).
Server-side figures come from TorchServe's Prometheus counters (queue and inference time per request)
and the handler's HandlerTime lines in <run_dir>/logs/model_metrics.log (per image, batches included).
CPU per prediction is the CPU time of the stack's processes (web app, TorchServe's JVM, its workers)
over a run, per request answered; the architecture tax is the web app's p50 minus the naive server's,
one client sending to each in turn. handle() is also timed in this process (bench/handler_speed.py).
Issue 16's targets are printed with PASS/FAIL; nothing here asserts.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil

from tests.stack import ROOT, Stack, archive, free_port_base
from train import pendigits

DEFAULT_MODEL_DIR = ROOT / "build" / "convnet"


def canvas_data_url(index: int = 0) -> bytes:
    """A held-out pen digit as the page sends it: canvas.toDataURL("image/png") of an opaque canvas."""
    digit = pendigits.held_out(pendigits.load())[index]
    image = pendigits.render(pendigits.layout(digit, random.Random(index)))
    return b"data:image/png;base64," + base64.b64encode(png_like_chromium(image))


def png_like_chromium(image) -> bytes:
    """PNG bytes encoded the way Chromium's toDataURL does (read off a real one): RGBA 8-bit, every row
    filtered with Up, zlib at its fastest level. Decoding that costs ~0.4 ms, 2-3x PIL's default grey PNG."""
    pixels = np.asarray(image.convert("RGBA"))
    height, width, _ = pixels.shape
    up = pixels.copy()
    up[1:] -= pixels[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filters do
    rows = np.concatenate([np.full((height, 1), 2, np.uint8), up.reshape(height, width * 4)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + chunk(b"IEND", b"")
    )


# ---- load generation -------------------------------------------------------------------------------


def http_request(url: str, body: bytes, headers: dict) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends the same pre-built request again and again."""

    def __init__(self, url: str, body: bytes, headers: dict):
        self.host, self.port = urlsplit(url).hostname, urlsplit(url).port
        self.request = http_request(url, body, headers)
        self.reader = self.writer = None

    async def send(self) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        match = re.search(rb"\r\ncontent-length: *(\d+)", lower)
        if match:
            body = await self.reader.readexactly(int(match[1]))
        else:  # chunked
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class AiohttpConnection:
    """The same with aiohttp's client (one connector of one connection), to measure what it costs."""

    def __init__(self, url: str, body: bytes, headers: dict):
        import aiohttp

        self.url, self.body, self.headers = url, body, headers
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))

    async def send(self) -> tuple[int, bytes]:
        async with self.session.post(self.url, data=self.body, headers=self.headers) as response:
            return response.status, await response.read()

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self.session.close())


@dataclass
class Result:
    target: str
    clients: int
    seconds: float
    latencies: list = field(default_factory=list)  # seconds, successful requests in the window
    errors: int = 0
    cpu: dict = field(default_factory=dict)  # CPU ms per request, by process group, in the window
    server: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000 if ordered else float("nan")


async def load(
    target, url, body, headers, clients, seconds, warmup, connection_class, cpu_snapshot
) -> Result:
    """`clients` closed-loop connections; only requests started after the warm-up and done in time count."""
    result = Result(target, clients, seconds)
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds
    first = {}

    async def client(index: int) -> None:
        connection = connection_class(url, body, headers)
        try:
            while (sent := loop.time()) < end:
                try:
                    status, answer = await connection.send()
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status, answer = 0, b""
                    connection.close()
                done = loop.time()
                first.setdefault("answer", (status, answer))
                if sent >= start and done <= end:
                    if status == 200:
                        result.latencies.append(done - sent)
                    else:
                        result.errors += 1
        finally:
            connection.close()

    cpu = {}

    async def measure_cpu() -> None:
        await asyncio.sleep(max(0.0, start - loop.time()))
        before = cpu_snapshot()
        await asyncio.sleep(max(0.0, end - loop.time()))
        cpu.update({name: seconds - before.get(name, 0.0) for name, seconds in cpu_snapshot().items()})

    await asyncio.gather(measure_cpu(), *(client(i) for i in range(clients)))
    requests = max(1, len(result.latencies) + result.errors)
    result.cpu = {name: seconds * 1000 / requests for name, seconds in cpu.items()}
    status, answer = first.get("answer", (0, b""))
    if status != 200 or "digit" not in json.loads(answer or b"{}"):
        print(f"  {target}: unexpected answer {status}: {answer[:200]!r}", file=sys.stderr)
    return result


# ---- server-side figures ---------------------------------------------------------------------------


def prometheus(metrics_url: str) -> dict:
    """Sums of the Prometheus samples of TorchServe's metrics, or the web app's (all labels), by name."""
    text = urllib.request.urlopen(metrics_url + "/metrics", timeout=5).read().decode()
    totals = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


class HandlerLog:
    """The workers' HandlerTime metric, one line per batch. In Prometheus mode it is only a gauge (the last
    batch) there, so the per-batch values are read where the frontend logs each worker's [METRICS] line
    (ts_log.log, logger org.pytorch.serve.wlm.WorkerLifeCycle): "HandlerTime.Milliseconds:1.23|...
    |#hostname:vm,<timestamp>,<request id>,<request id>,..." (the batch's request ids)."""

    LINE = re.compile(r"HandlerTime\.\w+:([0-9.]+)\|[^\n]*?#hostname:[^,\n]*,\d+,([^\n]*?),? pattern")

    def __init__(self, run_dir: Path):
        self.path = run_dir / "logs" / "ts_log.log"
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def per_image(self) -> tuple[float, float]:
        """(handler ms per image, images per batch) since the offset; NaN when nothing was logged."""
        if not self.path.exists():
            return float("nan"), float("nan")
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        batches = {ids: float(ms) for ms, ids in self.LINE.findall(text)}  # the default config logs twice
        images = sum(len(ids.split(",")) for ids in batches)
        if not images:
            return float("nan"), float("nan")
        return sum(batches.values()) / images, images / len(batches)


class CpuMeter:
    """CPU seconds used so far by each part: this load generator, the web app, TorchServe's Java frontend,
    its Python workers, the naive server. Their sum over a run, per request, is what a request costs."""

    def __init__(self, web: int | None, frontend: int | None, naive: int | None):
        self.pids = {"web": web, "frontend": frontend, "naive": naive}

    def __call__(self) -> dict:
        seconds = {"client": time.process_time()}
        for name, pid in self.pids.items():
            seconds[name] = self._cpu(pid)
        workers = (
            psutil.Process(self.pids["frontend"]).children(recursive=True) if self.pids["frontend"] else []
        )
        seconds["workers"] = sum(self._cpu(child.pid) for child in workers)
        return seconds

    @staticmethod
    def _cpu(pid: int | None) -> float:
        if not pid:
            return 0.0
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system


async def measure_torchserve(args, target, url, body, headers, clients, targets) -> Result:
    metrics_url, run_dir = targets.metrics_url, targets.run_dir
    web_before = prometheus(targets.web_url) if target == "web" else {}
    before, log = prometheus(metrics_url), HandlerLog(run_dir)
    result = await load(
        target, url, body, headers, clients, args.duration, args.warmup, args.connection, targets.cpu
    )
    after = prometheus(metrics_url)
    handler_ms, batch = log.per_image()
    if target == "web":  # the web app packs drawings into requests (web/batching.py): per drawing
        web_after = prometheus(targets.web_url)
        sent = web_after.get("digit_batch_size_count", 0) - web_before.get("digit_batch_size_count", 0)
        drawings = web_after.get("digit_batch_size_sum", 0) - web_before.get("digit_batch_size_sum", 0)
        if sent:
            handler_ms, batch = handler_ms * sent / drawings, batch * drawings / sent
    requests = after.get("ts_inference_requests_total", 0) - before.get("ts_inference_requests_total", 0)
    if requests:
        result.server = {
            "queue_ms": (after["ts_queue_latency_microseconds"] - before["ts_queue_latency_microseconds"])
            / requests
            / 1000,
            "inference_ms": (
                after["ts_inference_latency_microseconds"] - before["ts_inference_latency_microseconds"]
            )
            / requests
            / 1000,
            "handler_ms_per_image": handler_ms,
            "batch": batch,
        }
    return result


# ---- the stack -------------------------------------------------------------------------------------


@dataclass
class Targets:
    web_url: str
    inference_url: str
    metrics_url: str
    run_dir: Path
    naive_url: str
    web_pid: int | None = None
    cpu: CpuMeter | None = None
    cold_start: float | None = None  # seconds from `tsctl start` to the first answer


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode})")
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (400 for the empty body)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {seconds} s")


def start_naive(model: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench.naive_server", "--model", str(model), "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    wait_until_up(f"http://127.0.0.1:{port}/predict", process)
    return process


def listening_pid(port: int) -> int | None:
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            return connection.pid
    return None


def running_targets(run_dir: Path) -> Targets:
    """The stack `make serve` + `make web` started: addresses from its run dir's config.properties."""
    props = dict(re.findall(r"^(\w+)=(.*)$", (run_dir / "config.properties").read_text(), re.M))
    web_port = int(os.environ.get("WEB_PORT", 5500))
    targets = Targets(
        f"http://127.0.0.1:{web_port}", props["inference_address"], props["metrics_address"], run_dir, ""
    )
    targets.web_pid = listening_pid(web_port)
    return targets


def run(args) -> int:
    model = args.model_dir / "model.pt"
    if not model.exists():
        print(f"error: {model} not found: `make train` (or --model-dir DIR with model.pt)", file=sys.stderr)
        return 2
    payload = canvas_data_url(args.digit)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=args.workdir))
    processes, stack = [], None
    try:
        if args.running:
            targets = running_targets(args.run_dir.resolve())
        else:
            store = workdir / "model_store"
            archive(args.model_dir, store, "1.0")
            stack = Stack(workdir / "run", store)
            stack.run_dir.mkdir(parents=True)
            started = time.monotonic()
            stack.tsctl("start", "1.0")  # returns once a real drawing is answered
            cold_start = time.monotonic() - started
            stack.start_web()
            targets = Targets(stack.web_url, stack.inference_url, stack.metrics_url, stack.run_dir, "")
            targets.cold_start, targets.web_pid = cold_start, stack.web.pid
        naive_port = free_port_base(1)
        processes.append(start_naive(model, naive_port, workdir / "naive.log"))
        targets.naive_url = f"http://127.0.0.1:{naive_port}"
        frontend = int((targets.run_dir / "tmp" / ".model_server.pid").read_text())
        targets.cpu = CpuMeter(targets.web_pid, frontend, processes[0].pid)
        key = json.loads((targets.run_dir / "key_file.json").read_text())["inference"]["key"]
        return asyncio.run(measure_all(args, targets, payload, key))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        if stack:
            stack.stop()


async def measure_all(args, targets: Targets, payload: bytes, key: str) -> int:
    direct_headers = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {key}"}
    plain = {"Content-Type": "text/plain"}
    urls = {
        "direct": (targets.inference_url + "/predictions/mnist", direct_headers),
        "web": (targets.web_url + "/predict", plain),
        "naive": (targets.naive_url + "/predict", plain),
    }
    urls = {target: urls[target] for target in args.targets}
    print(
        f"body: {len(payload)} B canvas data URL; {args.duration:g} s per run after {args.warmup:g} s warm-up"
    )
    print(f"model: {args.model_dir}; load generator: {args.client}; {os.cpu_count()} cores")
    if targets.cold_start is not None:
        print(f"cold start: {targets.cold_start:.1f} s from `tsctl start` to the first answer")
    if args.settle:
        # A fresh JVM compiles its hot paths in the first seconds (the frontend burns ~5 ms of CPU per
        # request until then), and the workers' first batches allocate: load everything first, unmeasured.
        for target, (url, headers) in urls.items():
            await load(
                target, url, payload, headers, max(args.clients), args.settle, 0, args.connection, dict
            )
    print(HEADER)
    results = {}
    for clients in args.clients:
        for target, (url, headers) in urls.items():
            if target == "naive":
                result = await load(
                    target, url, payload, headers, clients,
                    args.duration, args.warmup, args.connection, targets.cpu,
                )  # fmt: skip
            else:
                result = await measure_torchserve(args, target, url, payload, headers, clients, targets)
            results[target, clients] = result
            print_row(result)
            await asyncio.sleep(args.pause)
    print(LEGEND)
    p50 = await paired(urls, payload, args.duration * 2, args.connection)
    return verdict(results, targets.cold_start, p50, handler_ms(args.model_dir, payload))


async def paired(urls: dict, body: bytes, seconds: float, connection_class) -> dict:
    """p50 of each target at 1 client, paired: one client sends to each in turn, so all see the same
    moment of a noisy 2-core machine. Run one after the other for 8 s each, two p50s drift apart by up
    to 1 ms from run to run here; paired, their difference is stable to ~0.1 ms. Returns ms by target."""
    connections = {name: connection_class(url, body, headers) for name, (url, headers) in urls.items()}
    latencies = {name: [] for name in urls}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end:
            for name, connection in connections.items():
                sent = loop.time()
                status, _ = await connection.send()
                if status == 200:
                    latencies[name].append(loop.time() - sent)
    finally:
        for connection in connections.values():
            connection.close()
    p50 = {name: sorted(values)[len(values) // 2] * 1000 for name, values in latencies.items() if values}
    rounds = min(len(values) for values in latencies.values())
    print(
        f"paired, 1 client sending to each in turn ({rounds} rounds): p50 "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in p50.items())
    )
    return p50


def handler_ms(model_dir: Path, body: bytes, batch: int = 4, rounds: int = 200) -> float:
    """handle() in this process (TorchServe's MockContext), ms per image at batch 4: the workers' own
    figure under load includes waiting for a core."""
    import torch

    from bench.handler_speed import handle_ms, handler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        return handle_ms(handler(model_dir), body, batch, rounds)
    finally:
        torch.set_num_threads(threads)


CPU_PARTS = ("client", "web", "frontend", "workers", "naive")
STACK_PARTS = ("web", "frontend", "workers")  # what serving a prediction costs; not the load generator
HEADER = (
    f"{'target':<7}{'clients':>8}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7} |"
    f" CPU ms/req: {' '.join(f'{p:>8}' for p in CPU_PARTS)}{'total':>7} |"
    f" {'queue ms':>8} {'TS ms':>6} {'handler ms/img':>14} {'batch':>5}"
)
LEGEND = (
    "CPU ms/req: CPU time of each process over the run / requests (client = this load generator). "
    "queue ms, TS ms: TorchServe's\nts_queue_latency_microseconds and ts_inference_latency_microseconds "
    "(includes the queue) per request; handler ms/img: HandlerTime\nper batch / images in it (ts_log.log); "
    "batch: images per batch (the web app's requests carry several: web/batching.py)."
)


def print_row(r: Result) -> None:
    s = r.server
    server = (
        f"{s['queue_ms']:8.2f} {s['inference_ms']:6.2f} {s['handler_ms_per_image']:14.3f} {s['batch']:5.1f}"
        if s
        else f"{'-':>8} {'-':>6} {'-':>14} {'-':>5}"
    )
    cpu = " ".join(f"{r.cpu.get(part, 0.0):8.3f}" for part in CPU_PARTS)
    print(
        f"{r.target:<7}{r.clients:>8}{r.rps:7.0f}{r.percentile(50):8.2f}{r.percentile(99):8.2f}{r.errors:>7} |"
        f"             {cpu}{sum(r.cpu.values()):7.3f} | {server}",
        flush=True,
    )


def verdict(results: dict, cold_start: float | None, p50: dict, handler: float) -> int:
    """Issue 16's targets, each PASS or FAIL with its figures; the older ratios for information."""
    checks, info = [], []
    web16, direct16, naive16 = (results.get((t, 16)) for t in ("web", "direct", "naive"))
    if web16:
        cpu = sum(web16.cpu.get(part, 0.0) for part in STACK_PARTS)
        checks.append(
            (
                cpu <= 1.0,
                f"CPU per prediction, web, 16 clients: {cpu:.2f} ms ({'+'.join(STACK_PARTS)}, <= 1.0)",
            )
        )
        p99 = web16.percentile(99)
        checks.append(
            (
                p99 <= 20 and not web16.errors,
                f"web p99, 16 clients: {p99:.1f} ms, {web16.errors} errors (<= 20, 0)",
            )
        )
    if {"web", "naive"} <= p50.keys():
        tax = p50["web"] - p50["naive"]
        checks.append(
            (tax <= 1.5, f"architecture tax, 1 client, paired: web p50 - naive p50 = {tax:.2f} ms (<= 1.5)")
        )
    checks.append((handler <= 0.5, f"handle() in-process, batch 4: {handler:.3f} ms per image (<= 0.5)"))
    if cold_start is not None:
        checks.append((cold_start <= 5, f"cold start: {cold_start:.1f} s (<= 5)"))
    if {"web", "direct"} <= p50.keys():
        info.append(
            f"web app over direct TorchServe, 1 client, paired: +{p50['web'] - p50['direct']:.2f} ms p50"
        )
    if web16 and direct16:
        info.append(f"web/direct throughput, 16 clients: {web16.rps / direct16.rps:.2f}")
    if web16 and naive16:
        info.append(f"web/naive throughput, 16 clients: {web16.rps / naive16.rps:.2f}")
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    for text in info:
        print(f"info  {text}")
    return 0 if all(ok for ok, _ in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR))
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--targets", nargs="+", default=["direct", "web", "naive"], choices=["direct", "web", "naive"]
    )
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per run before measuring")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="unmeasured seconds of load per target first"
    )
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between runs (queues drain)")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    parser.add_argument("--digit", type=int, default=0, help="which held-out pen digit to send")
    parser.add_argument("--running", action="store_true", help="measure the running make serve/web stack")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "run", help="with --running: its run dir")
    parser.add_argument("--workdir", type=Path, default=None, help="where its own stack's run dir goes")
    args = parser.parse_args()
    args.model_dir = args.model_dir.resolve()
    args.connection = RawConnection if args.client == "raw" else AiohttpConnection
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
