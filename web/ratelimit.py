"""Rate limits: a token bucket per client and route, refused requests answered 429 before any work.

A bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request takes one, and a
/read, once its work is known, more by the candidate pieces it was cut into (charge; READ_PIECES_PER_TOKEN).
The client is the peer address, or, when the peer is a proxy listed in WEB_TRUSTED_PROXIES, the rightmost
X-Forwarded-For address that is not such a proxy (anything left of it the client wrote itself); IPv6
clients by their /64. Buckets live in one map of at most
`max_buckets` entries, least recently used evicted first: memory stays bounded however many addresses
come (an evicted client starts again with a full bucket, which is what an idle one would have).

Why not the `limits` package (the library under Flask-Limiter and aiohttp-ratelimiter): its strategies
are fixed and moving windows, not token buckets, and its memory storage has no bound on the number of
keys. This is a dict and two floats per key. Figures and defaults: docs/limits.md.

    WEB_RATE_LIMITS="/predict=150:300 /read=37.5:75 /api/feedback=2:20 /readyz=10:20 *=50:200"   # route=rate:burst; * = every other
"""

import asyncio
import ipaddress
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web

from web.metrics import RATE_LIMITED

# The liveness probe and the scrape come from the kubelet and Prometheus: refusing them would restart a
# busy pod or blind it exactly when it is busy, and they cost next to nothing. /readyz is limited like
# any route (its own bucket, DEFAULT_LIMITS): it answers from memory (web/readiness.py), and its limit
# is 50x what a kubelet asks.
UNLIMITED = frozenset({"/healthz", "/metrics"})
OTHER = "*"  # every limited route without a limit of its own: the page, static files, the API docs
# The client a limited request is counted against, kept on the request: the batcher queues its drawings
# by the same key (web/batching.py), so X-Forwarded-For is read in one place.
CLIENT = web.RequestKey("client", str)
# charge(tokens): more from the bucket that let the request through (its client's, of its route), once the
# view knows what the request cost (the /read view: web/app.py).
CHARGE = web.RequestKey[Callable[[float], None]]("charge")


# A refused request is answered after a pause, its wait for a token, between these bounds (seconds): a
# client that retries at once, or a flood on many connections, is answered at the pace of its pauses, not
# as fast as the event loop can write 429s (wrk on 32 connections asks for several thousand a second, each
# about the cost of an answer from memory). Paused, a /readyz flood answered ~340 a second and left
# /predict's p99 where it was (docs/performance.md, bench/faults.py); a paused connection is a sleeping
# coroutine, and the refusal says the same thing a little later.
REFUSAL_PAUSE = (0.1, 1.0)


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens a second
    burst: float  # bucket size: requests a client may send at once after being idle


# Derived from one pod's measured capacity in docs/limits.md: no single client can take more than a
# tenth of a pod on /predict, nor on /read (a /read may cost 4x a /predict: a quarter of the rate);
# feedback is a person pressing a button.
DEFAULT_LIMITS = {
    "/predict": Limit(150, 300),
    "/read": Limit(37.5, 75),
    "/api/feedback": Limit(2, 20),
    "/readyz": Limit(10, 20),
    OTHER: Limit(50, 200),
}
# /read's limit counts reads of a 4-digit number, and a read costs by the candidate pieces it is cut into
# (each a to_mnist and a model input): a token is this many, the median over 4-digit numbers of writers
# 1-20, every spacing (27, 28, 29 for three samples: docs/limits.md; measured with bench/read_pieces.py, since removed). The token
# taken at admission pays for a read of up to this many; the view charges the rest (web/app.py read): the
# dearest body, 247 pieces (docs/limits.md), costs 8.8 tokens.
READ_PIECES_PER_TOKEN = 28


def read_tokens(pieces: int) -> float:
    """What a /read of this many candidate pieces costs in all: one token (taken at admission) at least."""
    return max(1.0, pieces / READ_PIECES_PER_TOKEN)


@dataclass(frozen=True)
class LimitConfig:
    limits: dict = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    trusted_proxies: tuple = ()  # ip_network objects
    max_buckets: int = 50_000  # ~330 bytes each (measured, docs/limits.md): ~17 MB at most

    @classmethod
    def from_env(cls) -> "LimitConfig":
        env = os.environ
        limits = dict(DEFAULT_LIMITS)
        limits.update(parse_limits(env.get("WEB_RATE_LIMITS", "")))
        proxies = tuple(
            ipaddress.ip_network(p, strict=False)
            for p in env.get("WEB_TRUSTED_PROXIES", "").replace(",", " ").split()
        )
        return cls(limits, proxies, int(env.get("WEB_RATE_LIMIT_BUCKETS", cls.max_buckets)))


def parse_limits(text: str) -> dict:
    """ "/predict=150:300 *=50:200" -> {route: Limit}."""
    limits = {}
    for item in text.replace(",", " ").split():
        try:
            route, numbers = item.rsplit("=", 1)
            rate, burst = (float(n) for n in numbers.split(":"))
        except ValueError:
            raise ValueError(f"WEB_RATE_LIMITS: {item!r} is not route=rate:burst") from None
        if rate <= 0 or burst < 1:
            raise ValueError(f"WEB_RATE_LIMITS: {item!r} needs a rate > 0 and a burst >= 1")
        limits[route] = Limit(rate, burst)
    return limits


class Buckets:
    """Token buckets by key, at most `size` of them, the least recently used evicted first."""

    def __init__(self, size: int, clock=time.monotonic):
        self.size = size
        self.clock = clock
        self.buckets: OrderedDict = OrderedDict()  # key -> (tokens, time of that count)

    def take(self, key, limit: Limit) -> float:
        """0 when the request may go (a token taken), else the seconds until a token is there (a bucket in
        debt, below 0 after a charge, waits for the debt too)."""
        now, tokens = self._refilled(key, limit)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / limit.rate
        self._store(key, tokens, now)
        return wait

    def charge(self, key, limit: Limit, tokens: float) -> None:
        """`tokens` more from the bucket of a request it let through, once the request's cost is known:
        the bucket may go below 0, and the client's next requests wait until it has refilled."""
        now, held = self._refilled(key, limit)
        # One charge takes at most a burst: whatever a count says (a handler's bug, a burst configured
        # smaller than a dear read), a request leaves its client at most a burst below empty, about two
        # bursts' worth of refill from full again. Per charge, not a floor under the bucket: requests let
        # through together (many connections) each pay theirs, or a client sending a burst of dear bodies
        # at once would have all but a burst's worth of their cost forgiven.
        self._store(key, held - min(tokens, limit.burst), now)

    def _refilled(self, key, limit: Limit) -> tuple[float, float]:
        now = self.clock()
        tokens, then = self.buckets.pop(key, (limit.burst, now))
        return now, min(limit.burst, tokens + (now - then) * limit.rate)

    def _store(self, key, tokens: float, now: float) -> None:
        self.buckets[key] = (tokens, now)  # re-inserted: the most recently used is last
        if len(self.buckets) > self.size:
            self.buckets.popitem(last=False)


def client_address(request: web.Request, trusted_proxies: tuple) -> str:
    """The client a request is counted against: the peer, or, when the peer is a trusted proxy, the
    rightmost X-Forwarded-For address that is not a trusted proxy. Proxies append the address they saw,
    so everything left of that entry was written by the client itself and may be anything. IPv6
    clients count by their /64: one host holds a whole /64 and could otherwise take a bucket per address."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For")
    if not (forwarded and trusted_proxies and _in(peer, trusted_proxies)):
        return _grouped(peer)
    for hop in reversed(forwarded.split(",")):
        try:
            ip = ipaddress.ip_address(hop.strip())
        except ValueError:
            return _grouped(peer)  # garbage written by a trusted proxy: count it against that proxy
        if not _in(str(ip), trusted_proxies):
            return _grouped(str(ip))
    return _grouped(peer)  # every hop a trusted proxy: the request comes from inside


def _grouped(address: str) -> str:
    """An IPv4 address as it is (IPv4-mapped IPv6 as IPv4); an IPv6 address as its /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a Unix socket's peer): one client
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def _in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else OTHER  # unknown paths share the others' bucket


def rate_limits(config: LimitConfig) -> web.middleware:
    buckets = Buckets(config.max_buckets)

    @web.middleware
    async def limit(request: web.Request, handler):
        route = route_of(request)
        if route in UNLIMITED:
            return await handler(request)
        name = route if route in config.limits else OTHER
        rule = config.limits[name]
        client = request[CLIENT] = client_address(request, config.trusted_proxies)
        key = (client, name)
        wait = buckets.take(key, rule)
        if wait:
            RATE_LIMITED.labels(name).inc()
            retry = max(1, math.ceil(wait))
            await asyncio.sleep(min(max(wait, REFUSAL_PAUSE[0]), REFUSAL_PAUSE[1]))
            response = web.json_response(
                {"error": f"too many requests to {name} from this address: try again in {retry} s"},
                status=429,
            )
            response.headers["Retry-After"] = str(retry)
            return response
        request[CHARGE] = partial(buckets.charge, key, rule)
        return await handler(request)

    limit.buckets = buckets  # for tests: the map's size
    return limit
