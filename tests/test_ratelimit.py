"""Rate limits (web/ratelimit.py) on a real aiohttp server (pytest-aiohttp, loopback): the limit, its
429 and Retry-After, refill, routes apart, X-Forwarded-For only from trusted proxies, the bounded map."""

import asyncio
import ipaddress
import math

import pytest
from prometheus_client import REGISTRY

from web.app import Config, init_app
from web.ratelimit import Buckets, Limit, LimitConfig, parse_limits

NO_TORCHSERVE = "http://127.0.0.1:9"  # refused at once: /predict answers 503 when the limit lets it through


def counted(route: str) -> float:
    return REGISTRY.get_sample_value("digit_rate_limited_total", {"route": route}) or 0.0


def app_with(tmp_path, limits: str, proxies: str = "", buckets: int = 1000):
    config = LimitConfig(
        parse_limits(limits), tuple(ipaddress.ip_network(p) for p in proxies.split()), buckets
    )
    return init_app(Config(inference_url=NO_TORCHSERVE, run_dir=tmp_path, limits=config))


async def statuses(client, path: str, count: int, method: str = "get", **kwargs) -> list[int]:
    out = []
    for _ in range(count):
        async with getattr(client, method)(path, **kwargs) as response:
            out.append(response.status)
    return out


async def test_over_the_limit_is_429_json_with_retry_after(aiohttp_client, tmp_path):
    client = await aiohttp_client(app_with(tmp_path, "/api/models=0.5:3"))
    before = counted("/api/models")
    assert await statuses(client, "/api/models", 3) == [200] * 3
    response = await client.get("/api/models")
    assert response.status == 429
    assert "too many requests" in (await response.json())["error"]
    # A token every 2 s, none left: 2 s to wait, a whole number of seconds rounded up.
    assert response.headers["Retry-After"] == "2"
    assert counted("/api/models") == before + 1


async def test_the_bucket_refills_at_its_rate(aiohttp_client, tmp_path):
    client = await aiohttp_client(app_with(tmp_path, "/api/models=20:2"))
    assert await statuses(client, "/api/models", 3) == [200, 200, 429]
    await asyncio.sleep(0.12)  # 20 a second: one token back after 50 ms, at most two
    assert (await statuses(client, "/api/models", 3))[0] == 200


async def test_each_route_has_its_own_bucket(aiohttp_client, tmp_path):
    client = await aiohttp_client(app_with(tmp_path, "/predict=0.1:2 /api/models=0.1:2 *=0.1:2"))
    assert await statuses(client, "/predict", 3, "post", data=b"x") == [503, 503, 429]
    # /predict spent: the others still have theirs.
    assert await statuses(client, "/api/models", 3) == [200, 200, 429]
    assert await statuses(client, "/api/openapi.json", 3) == [200, 200, 429]
    # The routes without a limit of their own share "*" (spent by /api/openapi.json above).
    assert (await client.get("/")).status == 429


async def test_health_and_metrics_are_never_limited(aiohttp_client, tmp_path):
    client = await aiohttp_client(app_with(tmp_path, "*=0.1:1"))
    assert set(await statuses(client, "/healthz", 20)) == {200}
    assert set(await statuses(client, "/metrics", 20)) == {200}
    assert 429 not in await statuses(client, "/readyz", 5)  # 503 here (no TorchServe), never 429


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(aiohttp_client, tmp_path):
    # The test client's peer is 127.0.0.1.
    untrusted = await aiohttp_client(app_with(tmp_path, "/api/models=0.1:2", proxies="10.0.0.0/8"))
    for hop in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):  # a client cannot buy buckets by lying
        await untrusted.get("/api/models", headers={"X-Forwarded-For": hop})
    assert (await untrusted.get("/api/models", headers={"X-Forwarded-For": "203.0.113.4"})).status == 429

    trusted = await aiohttp_client(app_with(tmp_path, "/api/models=0.1:2", proxies="127.0.0.0/8"))
    first = {"X-Forwarded-For": "203.0.113.1, 127.0.0.1"}  # the first hop is the client
    assert await statuses(trusted, "/api/models", 3, headers=first) == [200, 200, 429]
    # Another client behind the same proxy has its own bucket; later hops do not matter.
    other = {"X-Forwarded-For": "203.0.113.9, 203.0.113.1"}
    assert await statuses(trusted, "/api/models", 2, headers=other) == [200, 200]
    # Garbage in the header is counted against the proxy itself.
    assert await statuses(trusted, "/api/models", 3, headers={"X-Forwarded-For": "junk"}) == [200, 200, 429]


async def test_the_client_map_is_bounded_least_recent_evicted(aiohttp_client, tmp_path):
    app = app_with(tmp_path, "/api/models=0.1:1", proxies="127.0.0.0/8", buckets=50)
    limit = app.middlewares[0]
    client = await aiohttp_client(app)
    spent = {"X-Forwarded-For": "198.51.100.1"}
    assert await statuses(client, "/api/models", 2, headers=spent) == [200, 429]
    for i in range(200):
        await client.get("/api/models", headers={"X-Forwarded-For": f"203.0.113.{i}"})
        assert len(limit.buckets.buckets) <= 50
    assert len(limit.buckets.buckets) == 50
    # 198.51.100.1 was the least recently used and is gone: it starts again with a full bucket.
    assert await statuses(client, "/api/models", 2, headers=spent) == [200, 429]


def test_buckets_unit():
    now = [0.0]
    buckets = Buckets(2, clock=lambda: now[0])
    rule = Limit(rate=4, burst=2)
    assert [buckets.take("a", rule) for _ in range(3)] == [0, 0, 0.25]
    now[0] = 0.25
    assert buckets.take("a", rule) == 0  # refilled one token
    assert math.isclose(buckets.take("a", rule), 0.25)
    buckets.take("b", rule)
    buckets.take("c", rule)  # over 2 keys: "a", the least recently used, goes
    assert list(buckets.buckets) == ["b", "c"]


@pytest.mark.parametrize("text", ["/predict=abc", "/predict=0:10", "/predict=5:0", "/predict"])
def test_bad_limits_are_refused_at_start(text):
    with pytest.raises(ValueError, match="WEB_RATE_LIMITS"):
        parse_limits(text)
