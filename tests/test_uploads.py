"""Bodies bounded in time and memory (web/uploads.py) on a real aiohttp server (pytest-aiohttp, loopback),
before a fake TorchServe: a stalled upload is answered 408 at its deadline, uploads beyond the bytes in
flight are refused 503 with Retry-After before they are read, and the others go on meanwhile."""

import asyncio

from tests.drawings import drawing
from web.app import Config, init_app
from web.ratelimit import LimitConfig, parse_limits
from web.uploads import SMALL_BODY, UploadLimits

UNLIMITED = LimitConfig(parse_limits("*=1000000:1000000"))


def app_with(tmp_path, fake_torchserve, uploads: UploadLimits):
    url = fake_torchserve["url"]
    config = Config(
        inference_url=url,
        management_url=url,
        run_dir=fake_torchserve["run_dir"],
        feedback_db=str(tmp_path / "fb.db"),
        limits=UNLIMITED,
        uploads=uploads,
    )
    return init_app(config)


async def stalled(client, path: str, declared: int, sent: int):
    """A raw connection that declares `declared` body bytes, sends `sent` of them and stops."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    kind = "application/json" if path == "/api/feedback" else "text/plain"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: {declared}\r\n\r\n"
    writer.write(head.encode() + b"d" * sent)
    await writer.drain()
    return reader, writer


async def reserved(bound, expected: int) -> int:
    """The bytes the middleware holds, once they are `expected` (or after a second, whatever they are)."""
    for _ in range(100):
        if bound.in_flight() == expected:
            break
        await asyncio.sleep(0.01)
    return bound.in_flight()


async def status_of(reader) -> tuple[int, bytes]:
    response = await asyncio.wait_for(reader.read(4096), 5)
    return int(response.split(b" ", 2)[1]), response.partition(b"\r\n\r\n")[2]


async def test_a_body_that_does_not_arrive_in_time_is_a_408_json(aiohttp_client, tmp_path, fake_torchserve):
    client = await aiohttp_client(app_with(tmp_path, fake_torchserve, UploadLimits(deadline=0.5)))
    for path in ("/predict", "/read", "/api/feedback"):
        reader, writer = await stalled(client, path, 10_000, 10)
        started = asyncio.get_running_loop().time()
        status, body = await status_of(reader)
        waited = asyncio.get_running_loop().time() - started
        assert status == 408 and b'"error"' in body and 0.4 < waited < 3, (path, status, body, waited)
        writer.close()


async def test_uploads_past_the_bytes_in_flight_are_refused_before_being_read_and_others_go_on(
    aiohttp_client, tmp_path, fake_torchserve
):
    canvas = drawing(7)  # drawn before the clock starts: it takes a while
    limits = UploadLimits(bytes_in_flight=3 * 100_000, deadline=2.0, large_share=1)  # large: the whole bound
    app = app_with(tmp_path, fake_torchserve, limits)
    client = await aiohttp_client(app)
    bound = app.middlewares[-1]
    slow = [await stalled(client, "/predict", 100_000, 1000) for _ in range(3)]
    assert await reserved(bound, 300_000) == 300_000
    refused = await client.post("/predict", data=canvas, headers={"Content-Type": "text/plain"})
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert "error" in await refused.json()
    assert (await client.get("/api/models")).status in (200, 503)  # no body: never refused for uploads
    for reader, writer in slow:  # their deadline frees what they held
        assert (await status_of(reader))[0] == 408
        writer.close()
    assert await reserved(bound, 0) == 0
    answered = await client.post("/predict", data=canvas, headers={"Content-Type": "text/plain"})
    assert answered.status == 200, await answered.text()


async def test_slow_large_uploads_hold_only_their_share_and_canvases_are_still_answered(
    aiohttp_client, tmp_path, fake_torchserve
):
    canvas = drawing(7)
    assert len(canvas) <= SMALL_BODY
    app = app_with(tmp_path, fake_torchserve, UploadLimits(bytes_in_flight=4 * 100_000, deadline=2.0))
    client = await aiohttp_client(app)
    bound = app.middlewares[-1]
    slow = [await stalled(client, "/predict", 100_000, 1000) for _ in range(4)]  # 4 large: 2 fit the half
    refused = [await status_of(reader) for reader, _ in slow[2:]]
    assert [status for status, _ in refused] == [503, 503]
    assert bound.in_flight() == 200_000
    for _ in range(4):  # the other half: canvases, beside the stalled uploads
        answered = await client.post("/predict", data=canvas, headers={"Content-Type": "text/plain"})
        assert answered.status == 200, await answered.text()
    for reader, _ in slow[:2]:
        assert (await status_of(reader))[0] == 408
    for _, writer in slow:
        writer.close()


async def test_an_unexpected_failure_is_a_500_json_in_our_words_and_the_next_request_is_served(
    aiohttp_client, tmp_path, fake_torchserve
):
    app = app_with(tmp_path, fake_torchserve, UploadLimits())

    async def broken(request):
        raise KeyError("a library's own words, with internals")

    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    response = await client.get("/broken")
    assert response.status == 500 and response.content_type == "application/json"
    error = (await response.json())["error"]
    assert "internal error" in error and "library" not in error
    assert (
        await client.post("/predict", data=b"data:x", headers={"Content-Type": "text/plain"})
    ).status == 200
