"""A closed-loop load generator in Python for the benchmarks that pair targets request by request
(bench/proxy_hop.py, bench/shadow_overhead.py): pre-built requests written on raw asyncio
streams, one keep-alive connection per simulated client. Plain closed-loop load uses wrk (bench/wrk.py).
"""

import asyncio
import json
import re
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit


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
