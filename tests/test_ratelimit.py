"""Rate limits (web/ratelimit.py) on a real aiohttp server (pytest-aiohttp, loopback): the limit, its
429 and Retry-After, refill, routes apart, X-Forwarded-For only from trusted proxies, the bounded map;
/read charged by the pieces it was cut into (against a fake TorchServe saying how many)."""

import asyncio
import ipaddress
import math

import pytest
from prometheus_client import REGISTRY

from web.app import Config, init_app
from web.ratelimit import (
    DEFAULT_LIMITS,
    READ_PIECES_PER_TOKEN,
    REFUSAL_PAUSE,
    Buckets,
    Limit,
    LimitConfig,
    parse_limits,
)

NO_TORCHSERVE = "http://127.0.0.1:9"  # refused at once: /predict answers 503 when the limit lets it through


def counted(route: str) -> float:
    return REGISTRY.get_sample_value("digit_rate_limited_total", {"route": route}) or 0.0


def app_with(tmp_path, limits: str, proxies: str = "", buckets: int = 1000, torchserve: str = NO_TORCHSERVE):
    config = LimitConfig(
        parse_limits(limits), tuple(ipaddress.ip_network(p) for p in proxies.split()), buckets
    )
    return init_app(
        Config(inference_url=torchserve, run_dir=tmp_path, feedback_db=str(tmp_path / "fb.db"), limits=config)
    )


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


async def test_health_and_metrics_are_never_limited_and_readyz_has_a_generous_bucket_of_its_own(
    aiohttp_client, tmp_path
):
    client = await aiohttp_client(app_with(tmp_path, "*=0.1:1"))
    assert set(await statuses(client, "/healthz", 20)) == {200}
    assert set(await statuses(client, "/metrics", 20)) == {200}
    # /readyz answers from memory (web/readiness.py) and is limited like any route: without a limit of
    # its own it shares "*" (503 here: no TorchServe; then 429).
    assert await statuses(client, "/readyz", 2) == [503, 429]
    # The shipped default: a bucket of its own, 50x a kubelet's probe every 5 s, apart from "*".
    assert DEFAULT_LIMITS["/readyz"] == Limit(10, 20)
    defaults = LimitConfig(dict(DEFAULT_LIMITS) | parse_limits("*=0.1:1"))
    client = await aiohttp_client(
        init_app(Config(inference_url=NO_TORCHSERVE, run_dir=tmp_path, limits=defaults))
    )
    assert (await client.get("/")).status == 200 and (await client.get("/")).status == 429  # "*" spent
    before = counted("/readyz")
    assert await statuses(client, "/readyz", 21) == [503] * 20 + [429]
    assert counted("/readyz") == before + 1


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(aiohttp_client, tmp_path):
    # The test client's peer is 127.0.0.1.
    untrusted = await aiohttp_client(app_with(tmp_path, "/api/models=0.1:2", proxies="10.0.0.0/8"))
    for hop in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):  # a client cannot buy buckets by lying
        await untrusted.get("/api/models", headers={"X-Forwarded-For": hop})
    assert (await untrusted.get("/api/models", headers={"X-Forwarded-For": "203.0.113.4"})).status == 429

    trusted = await aiohttp_client(app_with(tmp_path, "/api/models=0.1:2", proxies="127.0.0.0/8"))
    first = {"X-Forwarded-For": "203.0.113.1, 127.0.0.1"}  # trusted hops are skipped from the right
    assert await statuses(trusted, "/api/models", 3, headers=first) == [200, 200, 429]
    # Another client behind the same proxy has its own bucket.
    other = {"X-Forwarded-For": "203.0.113.9"}
    assert await statuses(trusted, "/api/models", 2, headers=other) == [200, 200]
    # What the client wrote itself, left of the address the proxy appended, buys no bucket: 203.0.113.1's
    # bucket is spent whatever it puts in front.
    for forged in ("198.51.100.7", "198.51.100.8, 10.9.9.9"):
        forwarded = {"X-Forwarded-For": f"{forged}, 203.0.113.1"}
        assert (await trusted.get("/api/models", headers=forwarded)).status == 429
    # Garbage in the header is counted against the proxy itself.
    assert await statuses(trusted, "/api/models", 3, headers={"X-Forwarded-For": "junk"}) == [200, 200, 429]


async def test_ipv6_clients_count_by_their_64(aiohttp_client, tmp_path):
    trusted = await aiohttp_client(app_with(tmp_path, "/api/models=0.1:2", proxies="127.0.0.0/8"))
    one_host = [{"X-Forwarded-For": f"2001:db8:1:2::{i:x}"} for i in range(1, 4)]  # one /64, three addresses
    assert [(await trusted.get("/api/models", headers=h)).status for h in one_host] == [200, 200, 429]
    next_64 = {"X-Forwarded-For": "2001:db8:1:3::1"}
    assert (await trusted.get("/api/models", headers=next_64)).status == 200
    # An IPv4-mapped address is the IPv4 client.
    mapped, plain = {"X-Forwarded-For": "::ffff:203.0.113.50"}, {"X-Forwarded-For": "203.0.113.50"}
    statuses_in_turn = [(await trusted.get("/api/models", headers=h)).status for h in (mapped, plain, plain)]
    assert statuses_in_turn == [200, 200, 429]


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


def test_a_charge_makes_the_next_request_wait_for_the_debt_and_refill_pays_it_back():
    now = [0.0]
    buckets = Buckets(10, clock=lambda: now[0])
    rule = Limit(rate=2, burst=4)
    assert buckets.take("a", rule) == buckets.take("a", rule) == 0  # 2 left
    buckets.charge("a", rule, 4)  # the second request cost 5: 2 below empty
    assert buckets.take("a", rule) == 1.5  # (1 + 2) / 2 a second: the debt, then a token
    assert buckets.take("a", rule) == 1.5, "a refused request is not charged"
    now[0] = 1.5
    assert buckets.take("a", rule) == 0
    now[0] = 3.5  # 2 s more: full again, never over the burst
    assert [buckets.take("a", rule) for _ in range(5)] == [0, 0, 0, 0, 0.5]


def test_one_charge_takes_at_most_a_burst_and_charges_of_requests_let_through_together_add_up():
    now = [0.0]
    buckets = Buckets(10, clock=lambda: now[0])
    rule = Limit(rate=2, burst=4)
    for _ in range(3):
        assert buckets.take("a", rule) == 0  # 1 left
    assert buckets.take("a", rule) == 0  # the last token: 0 left
    buckets.charge("a", rule, 1e6)  # a count gone wrong: a burst below empty, no further
    assert buckets.buckets["a"] == (-4, 0.0)
    # The longest one request can hold its client off: (burst + 1) / rate, from its last token.
    assert buckets.take("a", rule) == 2.5
    now[0] = 4.5  # (4 + 4) / 2 s: full again
    assert buckets.take("b", rule) == buckets.take("b", rule) == 0  # two requests at once
    buckets.charge("b", rule, 3)
    buckets.charge("b", rule, 3)  # each pays its own: 2 - 6
    assert buckets.take("b", rule) == 2.5


def read_app(tmp_path, fake_torchserve, limits: str):
    """The web app before the fake TorchServe, X-Forwarded-For taken from loopback: a client per header."""
    return app_with(tmp_path, limits, proxies="127.0.0.0/8", torchserve=fake_torchserve["url"])


async def test_a_dear_read_spends_the_bucket_and_cheap_ones_do_not(aiohttp_client, tmp_path, fake_torchserve):
    client = await aiohttp_client(read_app(tmp_path, fake_torchserve, "/read=0.5:10"))
    a, b, c = ({"X-Forwarded-For": f"203.0.113.{i}"} for i in (1, 2, 3))
    # Reads of up to a token's pieces cost the one token each: the burst's worth go, as before.
    fake_torchserve["pieces"] = READ_PIECES_PER_TOKEN
    assert await statuses(client, "/read", 10, "post", data=b"x", headers=a) == [200] * 10
    assert await statuses(client, "/read", 1, "post", data=b"x", headers=a) == [429]
    # After 5 of them, one read of 8 tokens' pieces: 5 - 8 = 3 below empty, (3 + 1) / 0.5 = 8 s until
    # the next read may go, however cheap.
    assert await statuses(client, "/read", 5, "post", data=b"x", headers=b) == [200] * 5
    fake_torchserve["pieces"] = 8 * READ_PIECES_PER_TOKEN
    assert await statuses(client, "/read", 1, "post", data=b"x", headers=b) == [200]
    fake_torchserve["pieces"] = 1
    refused = await client.post("/read", data=b"x", headers=b)
    assert refused.status == 429 and refused.headers["Retry-After"] == "8"
    # Another client's bucket is its own.
    assert await statuses(client, "/read", 10, "post", data=b"x", headers=c) == [200] * 10


async def test_a_read_is_charged_after_its_answer_and_the_debt_is_paid_back(
    aiohttp_client, tmp_path, fake_torchserve
):
    client = await aiohttp_client(read_app(tmp_path, fake_torchserve, "/read=4:2"))
    pieces = REGISTRY.get_sample_value("digit_read_pieces_sum") or 0.0
    fake_torchserve["pieces"] = 3 * READ_PIECES_PER_TOKEN  # 3 tokens: 2 - 3, a token below empty
    assert await statuses(client, "/read", 2, "post", data=b"x") == [200, 429]
    assert REGISTRY.get_sample_value("digit_read_pieces_sum") == pieces + 3 * READ_PIECES_PER_TOKEN
    await asyncio.sleep(0.6)  # 4 a second: the debt and a token back after 0.5 s
    fake_torchserve["pieces"] = 2
    assert (await statuses(client, "/read", 1, "post", data=b"x")) == [200]


@pytest.mark.parametrize("text", ["/predict=abc", "/predict=0:10", "/predict=5:0", "/predict"])
def test_bad_limits_are_refused_at_start(text):
    with pytest.raises(ValueError, match="WEB_RATE_LIMITS"):
        parse_limits(text)


async def test_refusals_are_paused_so_a_flood_on_many_connections_is_paced(aiohttp_client, tmp_path):
    # 16 connections asking as fast as they can for a second, the bucket empty after its burst: without
    # the pause (REFUSAL_PAUSE) they draw thousands of 429s; with it, about 16 per 0.1 s.
    client = await aiohttp_client(app_with(tmp_path, "/api/models=1:2"))
    answered = []

    async def asker(deadline: float):
        while asyncio.get_running_loop().time() < deadline:
            async with client.get("/api/models") as response:
                answered.append(response.status)

    deadline = asyncio.get_running_loop().time() + 1.0
    await asyncio.gather(*(asker(deadline) for _ in range(16)))
    assert answered.count(200) <= 3 and 429 in answered
    assert len(answered) <= 16 * (1.0 / REFUSAL_PAUSE[0] + 2)
