"""What the web app's hop costs by itself, against the floor of any extra process hop, in one run.

    python -m bench.proxy_hop                  # backend delays 0 and 4 ms, 3000 rounds each
    python -m bench.proxy_hop --delays 0 2 4 --rounds 5000

No TorchServe: a stub backend answers every POST with a fixed JSON body of the handler's size, after
--delays ms (4 ms is about what TorchServe takes for one drawing at 1 client here). One client
alternates three targets, so all see the same moment of a noisy machine (paired):
  direct     the stub itself;
  forwarder  a raw byte forwarder in its own process (uvloop, no HTTP parsing): the floor of any hop;
  web        the real web app (web/app.py) proxying /predict to the stub.
Prints each p50, what the forwarder and the web app add to direct, and the CPU time each of the two
spends per request. Nothing here asserts.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

import psutil
import uvloop

from bench.canvas_body import canvas_data_url
from bench.closed_loop import RawConnection
from bench.wrk import wait_until_up
from tests.stack import ROOT, free_port_base

WARMUP = 300  # rounds per target before measuring

# What the handler answers for one drawing: ten probabilities and the 784-byte input in base64.
ANSWER = b'{"digit": 7, "probabilities": [' + b"0.1, " * 9 + b'0.1], "version": "1.0", "input_28x28": "'
ANSWER += b"A" * 1048 + b'"}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)
RESPONSE += ANSWER


class Stub(asyncio.Protocol):
    """Answers each complete POST with RESPONSE after `delay` seconds (keep-alive, Content-Length bodies)."""

    def __init__(self, delay: float):
        self.delay, self.buffer = delay, b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self.transport.write, RESPONSE)
            else:
                self.transport.write(RESPONSE)


class Forwarder(asyncio.Protocol):
    """Copies bytes between a client and its own connection to the backend, nothing else."""

    def __init__(self, backend_port: int):
        self.backend_port, self.upstream, self.pending = backend_port, None, []

    def connection_made(self, transport):
        self.transport = transport
        asyncio.ensure_future(self.connect())

    async def connect(self):
        loop = asyncio.get_running_loop()
        back = Back(self.transport)
        self.upstream, _ = await loop.create_connection(lambda: back, "127.0.0.1", self.backend_port)
        for data in self.pending:
            self.upstream.write(data)

    def data_received(self, data):
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)


class Back(asyncio.Protocol):
    def __init__(self, client):
        self.client = client

    def data_received(self, data):
        self.client.write(data)


async def serve(factory, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
    await server.serve_forever()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def paired(targets: dict, body: bytes, rounds: int, warmup: int = WARMUP) -> dict:
    connections = {
        name: RawConnection(url, body, {"Content-Type": "text/plain"}) for name, url in targets.items()
    }
    latencies = {name: [] for name in targets}
    try:
        for i in range(warmup + rounds):
            for name, connection in connections.items():
                sent = time.perf_counter()
                status, answer = await connection.send()
                if status != 200:
                    raise SystemExit(f"{name} answered {status}: {answer[:200]!r}")
                if i >= warmup:
                    latencies[name].append(time.perf_counter() - sent)
    finally:
        for connection in connections.values():
            connection.close()
    return {name: sorted(values)[len(values) // 2] * 1000 for name, values in latencies.items()}


def measure(delay_ms: float, rounds: int, body: bytes) -> dict:
    base = free_port_base(3)
    stub_port, forwarder_port, web_port = base, base + 1, base + 2
    python = sys.executable
    run_dir = tempfile.mkdtemp(prefix="proxy-hop-")  # no key file there: the web app sends no key
    env = dict(os.environ, WEB_PORT=str(web_port), TS_INFERENCE_URL=f"http://127.0.0.1:{stub_port}")
    env["FEEDBACK_DB"] = os.path.join(run_dir, "feedback.sqlite3")  # not the repository's data/
    env["TS_RUN_DIR"] = run_dir
    me = [python, "-m", "bench.proxy_hop"]
    processes = [
        subprocess.Popen([*me, "--stub", str(stub_port), str(delay_ms)], cwd=ROOT),
        subprocess.Popen([*me, "--forward", str(forwarder_port), str(stub_port)], cwd=ROOT),
        subprocess.Popen([python, "-m", "web.app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL),
    ]
    targets = {
        "direct": f"http://127.0.0.1:{stub_port}/predictions/mnist",
        "forwarder": f"http://127.0.0.1:{forwarder_port}/predictions/mnist",
        "web": f"http://127.0.0.1:{web_port}/predict",
    }
    try:
        for url, process in zip(targets.values(), processes, strict=True):
            wait_until_up(url, process, seconds=20)
        cpu_before = [cpu_seconds(p.pid) for p in processes]
        p50 = asyncio.run(paired(targets, body, rounds))
        cpu = [(cpu_seconds(p.pid) - before) * 1000 for p, before in zip(processes, cpu_before, strict=True)]
        per_request = WARMUP + rounds  # the warm-up rounds are inside the measured span too
        p50["forwarder cpu"] = cpu[1] / per_request
        p50["web cpu"] = cpu[2] / per_request
        return p50
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delays", type=float, nargs="+", default=[0, 4], help="stub answer delays, ms")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--stub", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    parser.add_argument("--forward", nargs=2, metavar=("PORT", "BACKEND_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        port, delay = int(args.stub[0]), float(args.stub[1]) / 1000
        return uvloop.run(serve(lambda: Stub(delay), port))
    if args.forward:
        port, backend = int(args.forward[0]), int(args.forward[1])
        return uvloop.run(serve(lambda: Forwarder(backend), port))
    body = canvas_data_url(0)
    print(f"1 client, paired, {args.rounds} rounds per delay; {len(body)} B canvas data URL; p50 in ms")
    for delay in args.delays:
        p50 = measure(delay, args.rounds, body)
        print(
            f"backend delay {delay:g} ms: direct {p50['direct']:.3f}, forwarder {p50['forwarder']:.3f} "
            f"(+{p50['forwarder'] - p50['direct']:.3f}), web app {p50['web']:.3f} "
            f"(+{p50['web'] - p50['direct']:.3f}); CPU per request: forwarder {p50['forwarder cpu']:.3f}, "
            f"web app {p50['web cpu']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
