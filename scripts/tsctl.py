"""Start, stop and manage the TorchServe that serves the digit model (the Makefile's serve/stop/register...).

    python -m scripts.tsctl start|stop|status
    python -m scripts.tsctl register|unregister|set-default VERSION
    python -m scripts.tsctl versions

TorchServe runs with its working directory in RUN_DIR (default run/): key_file.json, logs/, config
snapshots and the pid file ($TMPDIR/.model_server.pid, with TMPDIR=RUN_DIR/tmp) all live there, so two
instances (yours and the tests') never meet. PORT_BASE moves the five ports together (tests use it).
Calls go through the web app's TorchServe client (web/torchserve.py): the key from key_file.json, renewed
with the API key if it expired; `start` waits for the web app's readiness rule (a worker of the default
model answers its probe), so `tsctl start` returns when /readyz would say ready.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import psutil

from scripts import default_history
from web.registry import latest_snapshot, read_properties, snapshot_models
from web.torchserve import KeyFile, TorchServeClient, readiness

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mnist"
PORT_KEYS = ("inference_address", "management_address", "metrics_address")


class Fail(Exception):
    """A failure with a message for the person at the terminal (no stack trace)."""


class TorchServe:
    def __init__(self, run_dir: Path, config: Path, model_store: Path, port_base: int | None = None):
        self.run_dir = run_dir.resolve()
        self.config_file = config.resolve()
        self.model_store = model_store.resolve()
        self.port_base = port_base
        self.tmp = self.run_dir / "tmp"
        self.pid_file = self.tmp / ".model_server.pid"
        self.properties = self._properties()
        self.keys = KeyFile(self.run_dir / "key_file.json")

    # ---- configuration ----
    def _properties(self) -> dict:
        props = read_properties(self.config_file)
        if self.port_base:
            for offset, key in enumerate(PORT_KEYS):
                props[key] = f"http://127.0.0.1:{self.port_base + offset}"
            props["grpc_inference_port"] = str(self.port_base + 3)
            props["grpc_management_port"] = str(self.port_base + 4)
            # Workers talk to the frontend over /tmp/.ts.sock.<port>: keep instances apart there too.
            props["initial_worker_port"] = str(self.port_base + 100)
        props["model_store"] = str(self.model_store)
        return props

    def url(self, kind: str) -> str:
        return self.properties[f"{kind}_address"]

    def _runtime_config(self, version: str) -> Path:
        """config.properties plus, when TorchServe ran here before, its last model snapshot: the same
        versions and the same default come back after a restart."""
        props = dict(self.properties)
        props["load_models"] = f"{MODEL}-{version}.mar"
        snapshot = latest_snapshot(self.run_dir)
        if snapshot and snapshot_models(snapshot).get("models"):
            props["model_snapshot"] = json.dumps(snapshot_models(snapshot))
        path = self.run_dir / "config.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    # ---- lifecycle ----
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # 0 and 1 are never TorchServe (and signalling 0 or -1 would reach our own group or everything).
        return pid if pid > 1 and alive(pid) else None

    def start(self, version: str, timeout: float) -> None:
        check_java()
        if self.pid():
            print(f"TorchServe is already running (pid {self.pid()}); `make stop` first to restart it")
            self.wait(timeout)
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        (self.run_dir / "key_file.json").unlink(missing_ok=True)
        if not latest_snapshot(self.run_dir) and not (self.model_store / f"{MODEL}-{version}.mar").exists():
            raise Fail(f"{self.model_store}/{MODEL}-{version}.mar is missing: run `make archive` first")
        config = self._runtime_config(version)
        command = [str(Path(sys.executable).parent / "torchserve"), "--start", "--ts-config", str(config)]
        command += ["--model-store", str(self.model_store)]
        # Quieter logging than TorchServe's default (~13 lines per prediction): see log4j2.xml.
        command += ["--log-config", str(ROOT / "log4j2.xml")]
        env = {**os.environ, "TMPDIR": str(self.tmp), "LOG_LOCATION": str(self.run_dir / "logs")}
        env["METRICS_LOCATION"] = str(self.run_dir / "logs")
        started = time.monotonic()
        log = open(self.run_dir / "torchserve.out", "ab")
        subprocess.run(command, cwd=self.run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        self.wait(timeout)
        print(f"TorchServe answers at {self.url('inference')} ({time.monotonic() - started:.1f} s)")

    def wait(self, timeout: float) -> None:
        """Return once TorchServe is ready by the web app's rule (web/torchserve.py readiness: a worker
        of the default model answers the probe); fail with the log tail otherwise."""
        deadline, last = time.monotonic() + timeout, readiness(None)
        while (left := deadline - time.monotonic()) > 0:
            if not self.pid() and self.pid_file.exists():
                break
            # Not listening yet, hung up while starting, or no worker yet: not ready, asked again. A slow
            # answer while the machine is busy starting is still an answer: the probe may take what is left.
            last = self.run(lambda client: client.ready(timeout=left))
            if last.ready:
                return
            time.sleep(0.1)
        raise Fail(
            f"TorchServe was not ready within {timeout:.0f} s ({last.reason}). Last log lines:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        pid = self.pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            print("TorchServe is not running")
            return
        children = descendants(pid)
        signal_if_alive(pid, psutil.Process.terminate)  # the frontend's shutdown hook stops its workers
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
        for leftover in [pid, *children]:  # whatever ignored SIGTERM: no orphans left behind
            if alive(leftover):
                signal_if_alive(leftover, psutil.Process.kill)
        self.pid_file.unlink(missing_ok=True)
        (self.run_dir / "key_file.json").unlink(missing_ok=True)
        print("TorchServe stopped")

    def log_tail(self, lines: int = 30) -> str:
        log = self.run_dir / "logs" / "ts_log.log"
        text = log.read_text(errors="replace") if log.exists() else "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- HTTP ----
    def run(self, ask: Callable[[TorchServeClient], Awaitable[T]]) -> T:
        """ask(client) with the web app's TorchServe client (web/torchserve.py), over a session of its own."""

        async def request():
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                return await ask(
                    TorchServeClient(session, self.url("inference"), self.url("management"), self.keys)
                )

        return asyncio.run(request())

    def call(self, api: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request to the 'inference' or 'management' API."""
        return self.run(lambda client: client.call(api, method, path, body))

    def manage(self, method: str, path: str) -> dict | list:
        if not self.pid():
            raise Fail("TorchServe is not running: `make serve` first")
        status, body = self.call("management", method, path)
        try:
            doc = json.loads(body or b"{}")
        except json.JSONDecodeError:
            doc = {"message": body.decode(errors="replace")}
        if status >= 400:
            raise Fail(
                f"TorchServe answered {status}: {doc.get('message', doc) if isinstance(doc, dict) else doc}"
            )
        return doc


def check_java() -> None:
    java = shutil.which("java")
    help_text = (
        "TorchServe needs Java 17 or newer. Install it with: sudo apt-get install -y openjdk-17-jre-headless"
    )
    if not java:
        raise Fail(f"Java was not found. {help_text}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise Fail(f"Found {out.splitlines()[0] if out else 'an unknown Java'}. {help_text}")


def alive(pid: int) -> bool:
    try:  # a zombie is dead for our purposes
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def signal_if_alive(pid: int, send) -> None:
    """send(psutil.Process(pid)) (terminate or kill), unless the process is gone already."""
    try:
        send(psutil.Process(pid))
    except psutil.NoSuchProcess:
        pass


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, their children and so on (TorchServe's workers)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def register(ts: TorchServe, version: str) -> None:
    """Register an archived version and wait for its workers (as many as its model-config.yaml asks)."""
    mar = f"{MODEL}-{version}.mar"
    if not (ts.model_store / mar).exists():
        raise Fail(f"{ts.model_store}/{mar} not found: run `make archive VERSION={version}` first")
    print(ts.manage("POST", f"/models?url={mar}&synchronous=true")["status"])


def default_version(ts: TorchServe) -> str:
    return ts.manage("GET", f"/models/{MODEL}")[0]["modelVersion"]


def set_default(ts: TorchServe, version: str) -> None:
    """Make `version` the default and remember the one it replaces (for `make rollback`)."""
    replaced = default_version(ts)
    print(ts.manage("PUT", f"/models/{MODEL}/{version}/set-default")["status"])
    if replaced != version:
        default_history.push(ts.run_dir, replaced)


def versions(ts: TorchServe) -> None:
    default = default_version(ts)
    for model in ts.manage("GET", f"/models/{MODEL}/all"):
        ready = sum(w.get("status") == "READY" for w in model.get("workers", []))
        mark = "*" if model["modelVersion"] == default else " "
        suffix = " (default)" if mark == "*" else ""
        print(f"{mark} {model['modelVersion']:<12} {model['modelUrl']:<24} workers ready: {ready}{suffix}")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Which TorchServe: its run directory, configuration, model store and ports (scripts/lifecycle.py too)."""
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("TS_RUN_DIR", ROOT / "run")))
    parser.add_argument("--config", type=Path, default=ROOT / "config.properties")
    parser.add_argument(
        "--model-store", type=Path, default=Path(os.environ.get("MODEL_STORE", ROOT / "model_store"))
    )
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("PORT_BASE", 0)) or None)


def server(args: argparse.Namespace) -> TorchServe:
    return TorchServe(args.run_dir, args.config, args.model_store, args.port_base)


def exit_code(action) -> int:
    """Run a command; a failure is one line for the person at the terminal (exit 2), not a traceback."""
    try:
        return action() or 0
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except aiohttp.ClientConnectionError as e:
        print(f"error: cannot reach TorchServe ({e}): is it running? `make serve`", file=sys.stderr)
        return 2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["start", "stop", "status", "register", "unregister", "set-default", "versions"]
    )
    parser.add_argument("version", nargs="?", default=os.environ.get("VERSION", "1.0"))
    add_server_arguments(parser)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    ts = server(args)

    def run() -> int:
        if args.command == "start":
            ts.start(args.version, args.timeout)
        elif args.command == "stop":
            ts.stop()
        elif args.command == "status":
            print(f"running (pid {ts.pid()})" if ts.pid() else "not running")
            return 0 if ts.pid() else 1
        elif args.command == "register":
            register(ts, args.version)
        elif args.command == "unregister":
            print(ts.manage("DELETE", f"/models/{MODEL}/{args.version}")["status"])
        elif args.command == "set-default":
            set_default(ts, args.version)
        elif args.command == "versions":
            versions(ts)
        return 0

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
