"""/healthz and /readyz in-process (pytest-aiohttp), in front of a fake TorchServe whose answers the tests
choose (tests/fake_torchserve.py), then against the real one: liveness never depends on TorchServe;
readiness is the default model answering, as last heard (web/readiness.py): its answers to drawings or a
background probe every interval at most, never a request per /readyz, and a change at TorchServe shows
within the watch's bound."""

import asyncio
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.drawings import drawing
from tests.fake_torchserve import INFERENCE_KEY as KEY
from tests.stack import RATE_LIMITS, free_port_base, get_json, post
from web.app import Config, init_app
from web.ratelimit import LimitConfig, parse_limits
from web.readiness import Watch
from web.torchserve import PROBE_TIMEOUT, READINESS_PROBE, Readiness

INTERVAL = 0.2  # the in-process tests' probe interval: their bounds in tenths of a second


async def client_for(aiohttp_client, url, run_dir, **options):
    """The web app before `url`, with the tests' raised rate limits (/readyz's own: tests/test_ratelimit.py)."""
    limits = LimitConfig(parse_limits(RATE_LIMITS))
    config = Config(inference_url=url, management_url=url, run_dir=run_dir, limits=limits, **options)
    return await aiohttp_client(init_app(config))


async def status_within(client, status: int, seconds: float) -> float:
    """Seconds until /readyz answers `status` (asked every 10 ms); fails after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if (await client.get("/readyz")).status == status:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"/readyz not {status} within {seconds} s")


@pytest.mark.parametrize("status", [200, 422])
async def test_ready_when_the_default_model_runs_the_probe(aiohttp_client, fake_torchserve, status):
    fake_torchserve["status"] = status
    client = await client_for(aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"])
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready"}
    # The default model (no version in the path), the inference key only, the blank probe as the body.
    assert fake_torchserve["paths"] == ["/predictions/mnist"]
    assert fake_torchserve["auth"] == [f"Bearer {KEY}"]
    assert fake_torchserve["bodies"] == [READINESS_PROBE]


@pytest.mark.parametrize("status", [503, 500, 404, 507])
async def test_not_ready_when_no_worker_serves_the_default_model(aiohttp_client, fake_torchserve, status):
    fake_torchserve["status"] = status
    client = await client_for(aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"])
    response = await client.get("/readyz")
    assert response.status == 503
    assert str(status) in (await response.json())["error"]
    alive = await client.get("/healthz")
    assert alive.status == 200 and await alive.json() == {"status": "alive"}


async def test_not_ready_but_alive_when_torchserve_is_down(aiohttp_client, tmp_path):
    closed = f"http://127.0.0.1:{free_port_base(1)}"  # nothing listens there
    client = await client_for(aiohttp_client, closed, tmp_path)
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.content_type == "application/json"
    assert "does not answer" in (await response.json())["error"]
    alive = await client.get("/healthz")
    assert alive.status == 200 and await alive.json() == {"status": "alive"}


async def test_a_flood_of_readyz_sends_one_probe_an_interval_at_most(aiohttp_client, fake_torchserve):
    fake_torchserve["status"] = 422
    client = await client_for(
        aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"], ready_interval=INTERVAL
    )
    started = time.monotonic()
    for _ in range(10):
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(32)))
        assert {r.status for r in answers} == {200}
    elapsed = time.monotonic() - started
    # 320 /readyz; the fake was asked once at the start, then once an interval at most.
    assert 1 <= len(fake_torchserve["bodies"]) <= 2 + elapsed / INTERVAL
    assert set(fake_torchserve["bodies"]) == {READINESS_PROBE}


async def test_answers_to_drawings_are_the_proof_and_no_probe_goes_while_they_come(
    aiohttp_client, fake_torchserve
):
    client = await client_for(
        aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"], ready_interval=INTERVAL
    )
    assert (await client.get("/readyz")).status == 200  # the first probe's word
    for _ in range(20):  # a drawing every 50 ms for 1 s: 5 intervals, each with answers in it
        assert (await client.post("/predict", data=b"data:drawing")).status == 200
        assert (await client.get("/readyz")).status == 200
        await asyncio.sleep(0.05)
    assert fake_torchserve["bodies"].count(READINESS_PROBE) <= 2  # the first, and one in flight at most


async def test_a_drawing_that_finds_the_worker_gone_makes_readyz_say_so_at_once(
    aiohttp_client, fake_torchserve
):
    """A 5xx to a drawing of the default version is word as much as a 200 is: /readyz says not ready from
    that answer on, without waiting for the next probe; a drawing's own 4xx says nothing of the worker."""
    client = await client_for(
        aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"], ready_interval=INTERVAL * 100
    )
    assert (await client.get("/readyz")).status == 200
    fake_torchserve["status"] = 400  # the handler refusing one drawing
    assert (await client.post("/predict", data=b"data:drawing")).status == 400
    assert (await client.get("/readyz")).status == 200
    fake_torchserve["status"] = 503  # no worker
    assert (await client.post("/predict", data=b"data:drawing")).status >= 500
    assert (await client.get("/readyz")).status == 503
    fake_torchserve["status"] = 200
    assert (await client.post("/predict", data=b"data:drawing")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_readyz_follows_torchserve_within_the_bound_both_ways(aiohttp_client, fake_torchserve):
    client = await client_for(
        aiohttp_client, fake_torchserve["url"], fake_torchserve["run_dir"], ready_interval=INTERVAL
    )
    bound = 2 * INTERVAL + PROBE_TIMEOUT
    assert (await client.get("/readyz")).status == 200
    assert (await client.post("/predict", data=b"data:drawing")).status == 200  # the freshest word: ready
    fake_torchserve["status"] = 503  # the worker gone
    assert await status_within(client, 503, bound + 0.5) <= bound + 0.5
    assert "503" in (await (await client.get("/readyz")).json())["error"]
    fake_torchserve["status"] = 200
    assert await status_within(client, 200, bound + 0.5) <= bound + 0.5


async def test_the_watch_takes_the_latest_word_and_no_word_for_long_is_not_ready():
    now = [100.0]
    word = [Readiness(False, "the model server does not answer")]

    async def probe():
        return word[0]

    watch = Watch(probe, interval=2, clock=lambda: now[0])
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0)  # the first probe: not ready
    assert watch.now() == word[0] and watch.probes == 1
    now[0] += 0.1
    watch.answered()  # later than the probe: ready
    assert watch.now().ready
    now[0] += watch.stale - 0.1
    assert watch.now().ready
    now[0] += 0.2  # no word for longer than `stale`: the task is stuck or gone
    assert not watch.now().ready and "no word" in watch.now().reason
    task.cancel()

    async def broken():
        raise KeyError("a bug")

    watch = Watch(broken, interval=0.01)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.05)  # a probe that raises is a word of its own, and the next ones still go
    assert watch.probes >= 2 and watch.now() == Readiness(False, "the readiness probe failed (KeyError)")
    task.cancel()


def test_web_host_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("WEB_HOST", raising=False)
    assert Config.from_env().host == "127.0.0.1"  # a host machine: loopback unless told otherwise
    monkeypatch.setenv("WEB_HOST", "0.0.0.0")
    assert Config.from_env().host == "0.0.0.0"


def scale(stack, workers: int) -> None:
    stack.torchserve.manage(
        "PUT", f"/models/mnist?min_worker={workers}&max_worker={workers}&synchronous=true"
    )


def torchserve_requests(stack) -> float:
    """Inference requests TorchServe has counted (its metrics API: ts_inference_requests_total)."""
    text = urllib.request.urlopen(stack.metrics_url + "/metrics", timeout=5).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ts_inference_requests_total"
    )


def readyz_within(stack, status: int, seconds: float) -> tuple[float, dict]:
    """(seconds until /readyz answered `status`, its body), asked every 50 ms; fails after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        got, body = get_json(stack.web_url + "/readyz")
        if got == status:
            return time.monotonic() - started, body
        time.sleep(0.05)
    raise AssertionError(f"/readyz not {status} within {seconds} s: {got} {body}")


def test_real_stack_readyz_floods_never_reach_torchserve_and_follow_it_within_the_bound(own_stack):
    """The real TorchServe: ready with workers; a flood of /readyz (32 connections) costs TorchServe a
    probe every 2 s at most; not ready within the bound once its workers are scaled to 0 (TorchServe
    itself still answers) or it is stopped, ready again within the bound once it is back; alive
    throughout. The bound is the watch's (web/readiness.py, 5 s) and a second of this busy machine."""
    bound = Watch(None).bound + 1
    url = own_stack.web_url + "/readyz"
    assert get_json(url) == (200, {"status": "ready"})
    before, started = torchserve_requests(own_stack), time.monotonic()

    def ask(_) -> list[int]:
        statuses = []
        while time.monotonic() - started < 4:
            with urllib.request.urlopen(url, timeout=10) as response:
                statuses.append(response.status)
        return statuses

    with ThreadPoolExecutor(32) as pool:
        statuses = [s for batch in pool.map(ask, range(32)) for s in batch]
    asked = torchserve_requests(own_stack) - before
    elapsed = time.monotonic() - started
    print(f"\n{len(statuses)} /readyz in {elapsed:.1f} s: {asked:.0f} requests at TorchServe")
    assert set(statuses) == {200} and len(statuses) > 100
    assert asked <= 1 + elapsed / Watch(None).interval

    scale(own_stack, 0)
    _, body = readyz_within(own_stack, 503, bound)
    assert "no ready worker" in body["error"]
    scale(own_stack, 1)
    readyz_within(own_stack, 200, bound)
    assert post(own_stack.web_url + "/predict", drawing())[0] == 200
    own_stack.stop_torchserve()
    took, body = readyz_within(own_stack, 503, bound)
    print(f"not ready {took:.1f} s after TorchServe stopped")
    assert "does not answer" in body["error"]
    assert get_json(own_stack.web_url + "/healthz") == (200, {"status": "alive"})
    own_stack.start_torchserve()  # returns once the default model answers a drawing
    readyz_within(own_stack, 200, bound)
    assert get_json(own_stack.web_url + "/healthz") == (200, {"status": "alive"})
