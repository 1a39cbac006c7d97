"""Which version answers a /predict or a /read (default, canary or ?version=), and the shadow copy.

CANARY_VERSION=x CANARY_PERCENT=n: that share of requests without ?version= go to x (the answer names
the version that answered, as always). SHADOW_VERSION=x: the default answers; once the answer is written
out, a copy of the drawing goes to x in a background task and the two answers are compared, the digits
of /predict, the numbers of /read (counted in web/metrics.py, each route's own counters: Endpoint).
SHADOW_PERCENT=n copies that share of those answers (the rest are counted as skipped): a copy costs what
an answer costs, so on busy cores a sample is what keeps the answers fast. At most SHADOW_LIMIT copies
(of both routes together) wait at once; past that a copy is dropped, not queued, so a slow or hung
shadow version can never pile up work (or memory) here.
"""

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from aiohttp import web
from prometheus_client import Counter, Histogram

from web.background import drain
from web.metrics import (
    CANARY,
    LATENCY,
    PREDICTIONS,
    READ_LATENCY,
    READ_SHADOW,
    READS,
    SHADOW,
    SHADOW_IN_FLIGHT,
)


class Answered(NamedTuple):
    response: web.Response  # the answer in our API's shape
    answer: dict  # the handler's answer, parsed ({} when the response is none of the handler's)
    pieces: int  # images of the drawing the model read (what /read is charged by; 0: none)


# send(version, "" for the default) -> the drawing's answer from that version (web/answers.py)
Send = Callable[[str], Awaitable[Answered]]


@dataclass(frozen=True)
class Endpoint:
    """A route's counters (web/metrics.py), and the field of its answers a shadow copy must match."""

    answers: Counter  # by version, route (default, canary, pinned) and status
    latency: Histogram  # by route
    shadows: Counter  # copies by version and outcome
    compared: str


PREDICT = Endpoint(PREDICTIONS, LATENCY, SHADOW, "digit")
READ = Endpoint(READS, READ_LATENCY, READ_SHADOW, "number")


@dataclass(frozen=True)
class TrafficConfig:
    canary_version: str = ""
    canary_percent: float = 0.0
    shadow_version: str = ""
    shadow_percent: float = 10.0  # the share whose p50 cost stays within target (docs/performance.md)
    shadow_limit: int = 8  # copies in flight: headroom for a pod's load, never a queue (docs/lifecycle.md)

    @classmethod
    def from_env(cls) -> "TrafficConfig":
        env = os.environ
        config = cls(
            canary_version=env.get("CANARY_VERSION", ""),
            canary_percent=float(env.get("CANARY_PERCENT", 0)),
            shadow_version=env.get("SHADOW_VERSION", ""),
            shadow_percent=float(env.get("SHADOW_PERCENT", cls.shadow_percent)),
            shadow_limit=int(env.get("SHADOW_LIMIT", cls.shadow_limit)),
        )
        for name in ("canary_percent", "shadow_percent"):
            if not 0 <= getattr(config, name) <= 100:
                raise ValueError(f"{name.upper()} must be between 0 and 100, not {getattr(config, name)}")
        return config


class Traffic:
    def __init__(self, config: TrafficConfig):
        self.config = config
        self.random = random.Random()
        self.shadows: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    def route(self, version: str) -> tuple[str, str]:
        """(version to ask, "" for the default; how it was chosen)."""
        if version:
            return version, "pinned"
        canary = self.config.canary_version
        if canary and self.random.random() * 100 < self.config.canary_percent:
            CANARY.labels(canary).inc()
            return canary, "canary"
        return "", "default"

    async def answer(
        self, request: web.Request, send: Send, version: str, endpoint: Endpoint = PREDICT
    ) -> Answered:
        """The request's answer from the version routed to, counted as `endpoint`'s; a default 200 is
        written out here when a shadow version is set, and its copy sent after it."""
        routed, route = self.route(version)
        started = time.perf_counter()
        answered = await send(routed)
        endpoint.latency.labels(route).observe(time.perf_counter() - started)
        response, answer = answered.response, answered.answer
        endpoint.answers.labels(answer.get("version", "-"), route, str(response.status)).inc()
        if route == "default" and self.config.shadow_version and response.status == 200:
            await response.prepare(request)
            await response.write_eof()  # the answer is on its way before the copy is even made
            self.shadow(send, endpoint, answer.get(endpoint.compared))
        return answered

    def shadow(self, send: Send, endpoint: Endpoint, expected) -> None:
        version = self.config.shadow_version
        if self.random.random() * 100 >= self.config.shadow_percent:
            endpoint.shadows.labels(version, "skipped").inc()
            return
        if len(self.shadows) >= self.config.shadow_limit:
            endpoint.shadows.labels(version, "dropped").inc()
            return
        task = asyncio.create_task(self._compare(send, version, endpoint, expected))
        self.shadows.add(task)
        task.add_done_callback(self.shadows.discard)

    async def _compare(self, send: Send, version: str, endpoint: Endpoint, expected) -> None:
        SHADOW_IN_FLIGHT.inc()
        try:
            copy = await send(version)
        except Exception:  # whatever goes wrong with a copy stays with the copy
            copy = None
        finally:
            SHADOW_IN_FLIGHT.dec()
        if copy is None or copy.response.status != 200:
            outcome = "failed"
        else:
            outcome = "agree" if copy.answer.get(endpoint.compared) == expected else "disagree"
        endpoint.shadows.labels(version, outcome).inc()

    async def close(self, grace: float = 2.0) -> None:
        """On shutdown: let copies in flight finish for a moment, then cancel the rest."""
        await drain(self.shadows, grace)
