"""Clients of the web app's /predict for tests and benchmarks: one keep-alive connection like a browser
tab (Client: the benchmarks' one Python client, bench/toolkit.py), a data set read by several of them
(evaluate), and many of them for a while (run_soak)."""

import base64
import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np

from train import pendigits
from train.evaluation import Result, result

SOAK_IMAGES = 24
# The head of a 1 MiB /predict upload, for clients that send its body slowly (bench/faults.py, the tests).
SLOW_UPLOAD_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n"
)


class Client:
    """One keep-alive connection, like a browser tab."""

    def __init__(self, url: str, local: str | None = None):
        """local: the address to send from (127.0.0.2: another client to the web app's rate limiter)."""
        parts = urlsplit(url)
        source = (local, 0) if local else None
        self.connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=30, source_address=source
        )

    def predict(self, body: bytes, path: str = "/predict") -> tuple[int, dict]:
        """POST body to /predict (or `path`: /read): (status, JSON answer), (0, {"error": ...}) when the
        connection failed (closed then: the next request opens a new one)."""
        try:
            self.connection.request("POST", path, body, {"Content-Type": "text/plain"})
            response = self.connection.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.connection.close()
            return 0, {"error": repr(e)}


def evaluate(url: str, items: list[tuple[int, bytes]], clients: int = 4) -> list[Result]:
    """(label, digit read or None for an error, probabilities) per drawing, through the web app at url."""

    def run(chunk):
        client = Client(url)
        return [result(label, *client.predict(body)) for label, body in chunk]

    chunks = [items[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return [pair for part in pool.map(run, chunks) for pair in part]


def soak_images() -> list[bytes]:
    """The soak's mix: 24 held-out pen digits as data URLs."""
    digits = random.Random(0).sample(pendigits.held_out(pendigits.load()), SOAK_IMAGES)
    rng = random.Random(1)
    return [
        b"data:image/png;base64,"
        + base64.b64encode(pendigits.png_bytes(pendigits.render(pendigits.layout(d, rng))))
        for d in digits
    ]


def same(a: dict, b: dict) -> bool:
    return a.get("digit") == b.get("digit") and np.allclose(a["probabilities"], b["probabilities"], atol=1e-4)


def run_soak(url: str, clients: int, seconds: float, watch=None) -> dict:
    """`clients` clients posting the soak's mix for `seconds`: requests, errors and cross-talk (an answer
    that differs from the one the same image got alone: another request's result delivered to this one);
    `watch()`'s figures (memory) at the start and the end."""
    bodies = soak_images()
    solo_client = Client(url)
    alone = [solo_client.predict(body) for body in bodies]
    assert all(status == 200 for status, _ in alone), alone
    counts = {"requests": 0, "errors": 0, "cross_talk": 0}
    examples, lock = [], threading.Lock()
    deadline = time.monotonic() + seconds

    def run(seed: int) -> None:
        client, rng = Client(url), random.Random(seed)
        while time.monotonic() < deadline:
            i = rng.randrange(len(bodies))
            status, answer = client.predict(bodies[i])
            with lock:
                counts["requests"] += 1
                if status != 200:
                    counts["errors"] += 1
                    examples.append((status, answer))
                elif not same(answer, alone[i][1]):
                    counts["cross_talk"] += 1
                    examples.append((i, answer.get("digit"), alone[i][1]["digit"]))

    memory_start = watch() if watch else {}
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        **counts,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(counts["requests"] / elapsed, 1),
        "examples": examples[:5],
        "memory_start": memory_start,
        "memory_end": watch() if watch else {},
    }
