"""Closed-loop HTTP load with wrk, the field's load generator (Debian: `apt-get install wrk`): each
connection sends its next request as soon as the last answer arrives. wrk is C and costs far less CPU
per request than any Python client, which matters on 2 cores where the client competes with the servers.
bench/post.lua posts one body with its headers and prints the run's figures as JSON.
"""

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")


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


def wrk(url: str, body: bytes, headers: dict, connections: int, seconds: int) -> Run:
    """`connections` keep-alive connections POSTing body to url for `seconds` (whole seconds: wrk's unit)."""
    require()
    with tempfile.NamedTemporaryFile(prefix="wrk-body-") as file:
        file.write(body)
        file.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
        command += ["-s", str(LUA), url, "--", file.name, *(f"{k}: {v}" for k, v in headers.items())]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    doc = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(
        doc["requests"],
        doc["duration_us"] / 1e6,
        doc["p50_us"] / 1000,
        doc["p99_us"] / 1000,
        doc["errors"],
        cpu,
    )


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    """Return once url answers a POST at all (an empty body's 400 counts); fail if the process exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode})")
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {seconds} s")
