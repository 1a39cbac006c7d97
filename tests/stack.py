"""The real stack for tests and benchmarks: a TorchServe process and the aiohttp web app process.

Each Stack has its own run directory and its own block of ports (PORT_BASE...+4 for TorchServe, +5 for
the web app, +100 for its workers' sockets), so tests never meet a `make serve` that is running. Tests
reach TorchServe's APIs as scripts/tsctl.py does (Stack.torchserve): through the web app's client and
key file (web/torchserve.py).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.tsctl import TorchServe

ROOT = Path(__file__).resolve().parent.parent
# The key the tests\' web apps sign feedback tickets with (web/tickets.py): tests can mint valid ones. As
# long as a cluster's must be (web/tickets.py MIN_KEY_LENGTH): tests run the web app on PostgreSQL too.
TICKET_KEY = "the-tests-ticket-key-0123456789abcdef0123456789abcdef"
# Every test sends from 127.0.0.1: limits far above any test's rate (the limiter has tests of its own).
RATE_LIMITS = (
    "/predict=100000:100000 /read=100000:100000 /api/feedback=100000:100000 /readyz=100000:100000 "
    "*=100000:100000"
)
PYTHON = sys.executable


def free_port_base(span: int = 6) -> int:
    """A block of `span` free loopback ports (and the worker port at +100)."""
    for base in range(20000 + (os.getpid() % 200) * 100, 60000, 150):
        if all(_free(base + i) for i in [*range(span), 100, 101, 102, 103]):
            return base
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def get_json(url: str) -> tuple[int, dict]:
    """GET a JSON route: (status, body), for errors too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, body: bytes, content_type: str | None = "text/plain", headers: dict | None = None):
    """POST a body: (status, JSON answer), for errors too."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_feedback(url: str, body: bytes):
    return post(url + "/api/feedback", body, "application/json")


def archive(model_dir: Path, model_store: Path, version: str) -> Path:
    """`make archive` for a trained model directory (model.pt + metrics.json)."""
    args = [f"MODEL_DIR={model_dir}", f"MODEL_STORE={model_store}", f"VERSION={version}"]
    subprocess.run(["make", "-s", "archive", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return model_store / f"mnist-{version}.mar"


def make(stack: "Stack", target: str, version: str = "", **env: str) -> subprocess.CompletedProcess:
    """`make target VERSION=version` against this stack's TorchServe (its run dir, model store, ports)."""
    environment = {
        **os.environ,
        **env,
        "TS_RUN_DIR": str(stack.run_dir),
        "MODEL_STORE": str(stack.model_store),
        "PORT_BASE": str(stack.port_base),
    }
    command = ["make", "-s", target] + ([f"VERSION={version}"] if version else [])
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)


def version_workers(stack: "Stack", version: str) -> set[int]:
    """The pids of a version's workers, all of which must be READY."""
    workers = stack.workers(version)
    pids = _ready_pids(workers)
    assert pids and len(pids) == len(workers), workers
    return pids


class Stack:
    def __init__(self, run_dir: Path, model_store: Path, port_base: int | None = None):
        self.run_dir = Path(run_dir)
        self.model_store = Path(model_store)
        self.port_base = port_base or free_port_base()
        self.inference_url = f"http://127.0.0.1:{self.port_base}"
        self.management_url = f"http://127.0.0.1:{self.port_base + 1}"
        self.metrics_url = f"http://127.0.0.1:{self.port_base + 2}"
        self.web_port = self.port_base + 5
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.web = None
        self.torchserve = TorchServe(
            self.run_dir, ROOT / "config.properties", self.model_store, self.port_base
        )

    def tsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [PYTHON, "-m", "scripts.tsctl", *args, "--run-dir", str(self.run_dir)]
        command += ["--model-store", str(self.model_store), "--port-base", str(self.port_base)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"tsctl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start_torchserve(self, version: str = "1.0") -> None:
        self.tsctl("start", version)

    def stop_torchserve(self) -> None:
        self.tsctl("stop")

    def start_web(self, **env: str) -> None:
        environment = {
            **os.environ,
            "WEB_PORT": str(self.web_port),
            "TS_INFERENCE_URL": self.inference_url,
            "TS_MANAGEMENT_URL": self.management_url,
            "TS_RUN_DIR": str(self.run_dir),
            "FEEDBACK_DB": str(self.run_dir / "feedback.sqlite3"),  # never the repository's data/
            # One address sends every test's requests, the fuzzer's thousands included: limits far above
            # any test's rate, so tests see the service, not the limiter (tests/test_ratelimit.py and
            # bench/flood.py test the limiter with its own limits; docs/limits.md).
            "FEEDBACK_TICKET_KEY": TICKET_KEY,  # tests that post feedback without asking /predict mint tickets
            "WEB_RATE_LIMITS": RATE_LIMITS,
            **env,
        }
        log = open(self.run_dir / "web.log", "ab")
        self.web = subprocess.Popen(
            [PYTHON, "-m", "web.app"], cwd=ROOT, env=environment, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.web_url + "/", timeout=1).read()
                return
            except OSError:
                if self.web.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"web app did not start: {(self.run_dir / 'web.log').read_text()}")

    def stop_web(self) -> None:
        if self.web and self.web.poll() is None:
            self.web.terminate()
            self.web.wait(10)

    def start(self) -> "Stack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.start_torchserve()
        self.start_web()
        return self

    def stop(self) -> None:
        self.stop_web()
        self.stop_torchserve()

    def key(self, kind: str) -> str:
        return self.torchserve.keys.key(kind)

    def workers(self, version: str = "") -> list[dict]:
        """The workers of a version (default: the default version) as the management API describes them."""
        path = "/models/mnist" + (f"/{version}" if version else "")
        return self.torchserve.manage("GET", path)[0]["workers"]

    def ready_worker_pids(self) -> set[int]:
        return _ready_pids(self.workers())

    def worker_pids(self, timeout: float = 60) -> set[int]:
        """The workers' pids once every worker is READY (start() returns when the first one answers)."""
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            pids = _ready_pids(workers)
            if workers and len(pids) == len(workers):
                return pids
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not all ready after {timeout:.0f} s: {workers}")
            time.sleep(0.1)


def _ready_pids(workers: list[dict]) -> set[int]:
    # A worker that is still starting is listed with pid -1, and os.kill(-1, ...) would signal every
    # process we may signal: only READY workers with a real pid count.
    return {w["pid"] for w in workers if w["status"] == "READY" and w["pid"] > 1}
