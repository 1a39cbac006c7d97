"""The web app in-process (pytest-aiohttp's aiohttp_client), in front of a fake TorchServe that records
what it is sent (tests/fake_torchserve.py): the proxy's own rules, its use of keys, its answers when the
backend misbehaves, and /read (a number: sent as a part number-0, its answer signed and counted, routed
to a canary or copied to a shadow as /predict is)."""

import asyncio
import ipaddress
import json
import posixpath
import re

import aiohttp
import pytest
from prometheus_client import REGISTRY

from tests.fake_torchserve import INFERENCE_KEY, MANAGEMENT_KEY, READ
from web.app import BATCHER, STATIC, Config, init_app
from web.feedback_store import NOT_A_DIGIT
from web.ratelimit import LimitConfig
from web.tickets import TicketError, drawing_hash
from web.traffic import TrafficConfig

GOOD = b"data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def client(aiohttp_client, fake_torchserve):
    url = fake_torchserve["url"]
    run_dir = fake_torchserve["run_dir"]
    config = Config(
        inference_url=url,
        management_url=url,
        run_dir=run_dir,
        timeout=1.0,
        feedback_db=str(run_dir / "fb.db"),
    )
    return await aiohttp_client(init_app(config))


async def test_forwards_the_body_with_the_inference_key_and_an_explicit_type(client, fake_torchserve):
    response = await client.post(
        "/predict", data=GOOD, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200
    assert (await response.json())["echo"] == GOOD.decode()
    assert fake_torchserve["auth"] == [f"Bearer {INFERENCE_KEY}"]
    assert fake_torchserve["content_types"] == ["application/octet-stream"]


async def test_the_answer_is_relayed_byte_for_byte_and_a_broken_one_is_a_502(client, fake_torchserve):
    fake_torchserve["raw"] = b'{"digit": 7,  "probabilities": [0.1, 0.9], "version": "1.0"}'
    response = await client.post("/predict", data=GOOD)
    assert response.status == 200 and response.content_type == "application/json"
    # TorchServe's bytes as they came, the feedback ticket (web/tickets.py) added at the end.
    relayed = await response.read()
    assert relayed.startswith(fake_torchserve["raw"][:-1] + b',"ticket":"')
    ticket = json.loads(relayed)["ticket"]
    assert Config().tickets.check(ticket, drawing_hash(GOOD), "1.0", 7)
    fake_torchserve["raw"] = b"<html>not json</html>"
    broken = await client.post("/predict", data=GOOD)
    assert broken.status == 502 and "error" in await broken.json()


async def test_a_not_a_digit_answer_carries_a_ticket_and_a_no_digit_one_none(client, fake_torchserve):
    """Feedback can confirm or correct "not a digit" (answer NOT_A_DIGIT); a blank canvas has nothing to say."""
    fake_torchserve["raw_status"] = 422
    fake_torchserve["raw"] = (
        b'{"error": "that does not look like a digit", "reason": "not_a_digit", "digit": 4, "version": "1.0"}'
    )
    answer = await (await client.post("/predict", data=GOOD)).json()
    assert Config().tickets.check(answer["ticket"], drawing_hash(GOOD), "1.0", NOT_A_DIGIT)
    fake_torchserve["raw"] = b'{"error": "no digit drawn: the canvas is blank", "reason": "no_digit"}'
    response = await client.post("/predict", data=GOOD)
    assert response.status == 422 and "ticket" not in await response.json()


async def test_a_renewed_key_is_picked_up_and_never_the_management_key(client, fake_torchserve):
    fake_torchserve["valid"] = "someone-else-renewed-it"  # the web app's key no longer works
    response = await client.post("/predict", data=GOOD)
    assert response.status == 200
    assert fake_torchserve["renewals"] == 1
    assert fake_torchserve["auth"] == [f"Bearer {INFERENCE_KEY}", "Bearer inf-2"]
    assert all(MANAGEMENT_KEY not in (auth or "") for auth in fake_torchserve["auth"])


async def test_requests_refused_together_renew_the_key_once_and_all_are_answered(client, fake_torchserve):
    """The key expires under requests in flight (each version its own request to TorchServe): all are
    refused. Renewing in turn, each would make the key the one before it got invalid (as TorchServe's
    /token does) and be refused again with it; they renew once, and every one is answered with the new key."""
    fake_torchserve["valid"] = "expired-meanwhile"
    fake_torchserve["delay"] = 0.2  # every request is in flight before the first refusal comes back
    versions = [f"{i}.0" for i in range(1, 7)]
    responses = await asyncio.gather(*(client.post(f"/predict?version={v}", data=GOOD) for v in versions))
    assert [r.status for r in responses] == [200] * len(versions)
    assert fake_torchserve["renewals"] == 1
    assert fake_torchserve["auth"].count("Bearer inf-2") == len(versions)


async def test_a_key_refused_even_after_renewal_is_a_502_not_the_clients_fault(client, fake_torchserve):
    fake_torchserve["refuse_every_key"] = True
    response = await client.post("/predict", data=GOOD)
    assert response.status == 502 and "inference key" in (await response.json())["error"]
    assert fake_torchserve["renewals"] == 1  # renewed once, then given up: no loop


async def test_version_is_routed_and_validated(client, fake_torchserve):
    assert (await client.post("/predict?version=2.0", data=GOOD)).status == 200
    assert fake_torchserve["paths"] == ["/predictions/mnist/2.0"]
    unknown = await client.post("/predict?version=9", data=GOOD)
    assert unknown.status == 404 and "version 9" in (await unknown.json())["error"]
    for bad in ["../../models", "a/b", "x" * 65, "%00"]:
        response = await client.post("/predict", params={"version": bad}, data=GOOD)
        assert response.status == 400 and "version" in (await response.json())["error"]
    assert fake_torchserve["paths"] == ["/predictions/mnist/2.0", "/predictions/mnist/9"]


async def test_oversize_body_is_413_json(client, fake_torchserve):
    response = await client.post("/predict", data=b"a" * (1024 * 1024 + 1))
    assert response.status == 413 and "too large" in (await response.json())["error"]
    assert fake_torchserve["paths"] == []


async def test_empty_body_is_400_json(client, fake_torchserve):
    response = await client.post("/predict", data=b"")
    assert response.status == 400 and "empty" in (await response.json())["error"]


@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("DELETE", "/predict"), ("POST", "/api/models"),
                                          ("PUT", "/api/models"), ("POST", "/models"), ("GET", "/predict")])  # fmt: skip
async def test_unknown_routes_and_methods_are_json_errors(client, method, path, fake_torchserve):
    response = await client.request(method, path, data=b"{}")
    assert response.status in (404, 405)
    assert "error" in await response.json()
    assert fake_torchserve["paths"] == []


async def test_page_has_security_headers(client):
    response = await client.get("/")
    assert response.status == 200 and "<canvas" in await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_script_is_es_modules_all_served_as_javascript(client):
    """index.html loads one module script; it and every module it imports are served with a JavaScript type
    (module scripts are refused otherwise, and nosniff forbids guessing), and every file in web/static/js/ is
    one of them (a module nothing imports would never run)."""
    page = await (await client.get("/")).text()
    todo = re.findall(r'<script type="module" src="([^"]+)"></script>', page)
    assert todo == ["/static/js/main.js"] and "<script src=" not in page
    served = set()
    while todo:
        path = todo.pop()
        if path in served:
            continue
        served.add(path)
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type in {"text/javascript", "application/javascript"}, response.content_type
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        imports = re.findall(r'\bfrom "(\./[\w-]+\.js)";', await response.text())
        todo += [posixpath.normpath(posixpath.join(posixpath.dirname(path), name)) for name in imports]
    assert served == {f"/static/js/{p.name}" for p in (STATIC / "js").glob("*.js")}
    # Every module main.js imports is preloaded with the page (one round trip, not two), and only those.
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', page))
    assert preloaded == served - {"/static/js/main.js"}


async def test_hung_backend_is_504_json(client, fake_torchserve):
    fake_torchserve["delay"] = 5  # the app's timeout is 1 s
    response = await client.post("/predict", data=GOOD)
    assert response.status == 504 and "in time" in (await response.json())["error"]


async def test_backend_down_is_503_json(aiohttp_client, unused_tcp_port_factory, tmp_path):
    dead = f"http://127.0.0.1:{unused_tcp_port_factory()}"
    config = Config(
        inference_url=dead, management_url=dead, run_dir=tmp_path, feedback_db=str(tmp_path / "fb.db")
    )
    client = await aiohttp_client(init_app(config))
    response = await client.post("/predict", data=GOOD)
    assert response.status == 503 and "down" in (await response.json())["error"]


async def test_a_multipart_upload_is_forwarded_as_its_bytes_with_an_explicit_type(client, fake_torchserve):
    form = aiohttp.FormData()
    form.add_field("image", GOOD, filename="digit.txt", content_type="text/plain")
    response = await client.post("/predict", data=form)
    assert response.status == 200 and (await response.json())["echo"] == GOOD.decode()
    # Never multipart/form-data: TorchServe would split the body into fields itself.
    assert fake_torchserve["content_types"] == ["application/octet-stream"]


async def test_a_form_field_outside_latin1_is_forwarded_as_utf8_not_a_500(client, fake_torchserve):
    # parse_qs decoded %E2%82%AC as UTF-8 and the result was re-encoded as Latin-1: UnicodeEncodeError, 500.
    body = b"image=%E2%82%AC"
    response = await client.post(
        "/predict", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200 and (await response.json())["echo"] == "€"


def read_samples() -> tuple[float, float, float]:
    """digit_read_digits (web/metrics.py): (answers counted, digits in them, answers of at most 2 digits)."""
    sample = REGISTRY.get_sample_value
    return (
        sample("digit_read_digits_count") or 0.0,
        sample("digit_read_digits_sum") or 0.0,
        sample("digit_read_digits_bucket", {"le": "2.0"}) or 0.0,
    )


def as_form(body: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", body, filename="digit.txt", content_type="text/plain")
    return form


@pytest.mark.parametrize(
    "send",
    [
        lambda: {"data": GOOD},  # the data URL as text
        lambda: {"json": {"image": GOOD.decode()}},  # passed through: the handler reads JSON
        lambda: {"data": b"image=" + GOOD, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        lambda: {"data": as_form(GOOD)},
    ],
    ids=["text", "json", "form field", "multipart"],
)
async def test_read_sends_the_drawing_as_a_part_named_number_0_and_signs_the_number(
    client, fake_torchserve, send
):
    before = read_samples()
    response = await client.post("/read", **send())
    assert response.status == 200 and response.content_type == "application/json"
    answer = await response.json()
    sent = fake_torchserve["bodies"][-1]
    # One request of one part, number-0, holding what /predict would have forwarded (web/bodies.py).
    assert fake_torchserve["content_types"][-1].startswith("multipart/form-data; boundary=")
    assert b'; name="number-0"' in sent and sent.count(b"Content-Disposition") == 1
    assert answer["echo"] in (GOOD.decode(), '{"image": "' + GOOD.decode() + '"}')
    assert answer["number"] == "42" and [d["digit"] for d in answer["digits"]] == [4, 2]
    assert Config().tickets.check(answer["ticket"], drawing_hash(GOOD), "1.0", "42")
    # Counted in /metrics: one answer of two digits.
    assert [b - a for a, b in zip(before, read_samples(), strict=True)] == [1, 2, 1]


async def test_a_number_with_a_piece_not_a_digit_signs_null_and_422s_carry_no_ticket(client, fake_torchserve):
    fake_torchserve["number"] = (
        200,
        {**READ, "number": None, "digits": [{**READ["digits"][0], "digit": None}]},
    )
    answer = await (await client.post("/read", data=GOOD)).json()
    assert answer["number"] is None
    assert Config().tickets.check(answer["ticket"], drawing_hash(GOOD), "1.0", "null")
    before = read_samples()
    for reason in ("no_digit", "two_lines", "too_many_digits"):
        fake_torchserve["number"] = (422, {"error": f"cannot read: {reason}", "reason": reason})
        response = await client.post("/read", data=GOOD)
        answer = await response.json()
        assert response.status == 422 and answer["reason"] == reason and "ticket" not in answer, answer
    assert read_samples() == before, "only answers with digits are counted"


async def test_read_takes_the_version_and_answers_the_4xx_of_predict(client, fake_torchserve):
    assert (await client.post("/read?version=2.0", data=GOOD)).status == 200
    unknown = await client.post("/read?version=9", data=GOOD)
    assert unknown.status == 404 and "version 9" in (await unknown.json())["error"]
    assert fake_torchserve["paths"] == ["/predictions/mnist/2.0", "/predictions/mnist/9"]
    bad = await client.post("/read", params={"version": "../x"}, data=GOOD)
    assert bad.status == 400 and "version" in (await bad.json())["error"]
    empty = await client.post("/read", data=b" ")
    assert empty.status == 400 and "empty" in (await empty.json())["error"]
    assert (await client.post("/read", data=b"a" * (1024 * 1024 + 1))).status == 413
    no_image = aiohttp.FormData()
    no_image.add_field("picture", GOOD, filename="digit.txt")  # multipart, no field named image
    assert (await client.post("/read", data=no_image)).status == 400
    # The handler's 4xx for a part is the answer's (a 415 for text that is no image, as /predict gives it).
    fake_torchserve["number"] = (415, {"error": "the body is text, not an image"})
    response = await client.post("/read", data=b"hello")
    assert response.status == 415 and (await response.json())["error"].startswith("the body is text")
    assert len(fake_torchserve["paths"]) == 3, "the 400s and the 413 never reached TorchServe"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    "path, answered, answers, shadows",
    [  # the fake's answers: a digit names no version ("-"), a number names 1.0
        ("/predict", "-", "digit_predictions_total", "digit_shadow_requests_total"),
        ("/read", "1.0", "digit_reads_total", "digit_read_shadow_requests_total"),
    ],
)
async def test_read_takes_a_canary_and_a_shadow_as_predict_does(
    aiohttp_client, fake_torchserve, path, answered, answers, shadows
):
    """Both routes go through Traffic (web/traffic.py), each on its own counters: the canary answers, and
    the default's answer is copied to the shadow version and compared (the digit, the number)."""
    url, run_dir = fake_torchserve["url"], fake_torchserve["run_dir"]

    def app(**traffic):
        config = Config(
            inference_url=url,
            management_url=url,
            run_dir=run_dir,
            feedback_db=str(run_dir / "fb.db"),
            traffic=TrafficConfig(**traffic),
        )
        return aiohttp_client(init_app(config))

    def canary_counts() -> tuple[float, float]:
        routed = sample("digit_canary_requests_total", version="2.0")
        return routed, sample(answers, version=answered, route="canary", status="200")

    canary, before = await app(canary_version="2.0", canary_percent=100), canary_counts()
    assert (await canary.post(path, data=GOOD)).status == 200
    assert fake_torchserve["paths"] == ["/predictions/mnist/2.0"]
    assert canary_counts() == (before[0] + 1, before[1] + 1)

    shadow = await app(shadow_version="2.0", shadow_percent=100)
    before = sample(shadows, version="2.0", outcome="agree")
    assert (await shadow.post(path, data=GOOD)).status == 200
    for _ in range(200):  # the copy goes once the answer is out
        if sample(shadows, version="2.0", outcome="agree") > before:
            break
        await asyncio.sleep(0.01)
    assert fake_torchserve["paths"][1:] == ["/predictions/mnist", "/predictions/mnist/2.0"]
    assert sample(shadows, version="2.0", outcome="agree") == before + 1


async def test_digits_and_numbers_sent_at_once_travel_together_and_each_gets_its_own_answer(
    client, fake_torchserve
):
    fake_torchserve["delay"] = 0.05  # the first requests are still out when the others arrive
    bodies = [b"data:image/png;base64,iVBORw0KGgo" + str(i).encode() + b"=" for i in range(8)]
    paths = ["/read" if i % 2 else "/predict" for i in range(8)]
    responses = await asyncio.gather(*(client.post(p, data=b) for p, b in zip(paths, bodies, strict=True)))
    for path, body, response in zip(paths, bodies, responses, strict=True):
        answer = await response.json()
        assert response.status == 200 and answer["echo"] == body.decode(), answer
        assert ("number" in answer) == (path == "/read") and ("digit" in answer) == (path == "/predict")
    mixed = [b for b in fake_torchserve["bodies"] if b'name="number-' in b and b'name="drawing-' in b]
    assert mixed, "no batch carried digits and numbers together"


async def test_clients_behind_a_trusted_proxy_take_turns_in_the_batches(aiohttp_client, fake_torchserve):
    """The batcher queues by the rate limiter's client (web/batching.py): behind a trusted proxy, the
    client its X-Forwarded-For names. A's burst waits while a request is out; B's drawing goes in the next batch."""
    url, run_dir = fake_torchserve["url"], fake_torchserve["run_dir"]
    proxies = LimitConfig(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    config = Config(
        inference_url=url,
        management_url=url,
        run_dir=run_dir,
        max_batch=4,
        batches_in_flight=1,
        feedback_db=str(run_dir / "fb.db"),
        limits=proxies,
    )
    app = init_app(config)
    client = await aiohttp_client(app)
    fake_torchserve["delay"] = 0.5  # the first request is still out when the others have all arrived

    def post(hop: str, body: bytes):
        return asyncio.create_task(client.post("/predict", data=body, headers={"X-Forwarded-For": hop}))

    async def queued(count: int) -> list[str]:
        for _ in range(400):
            line = app[BATCHER].lines.get("")
            if line and line.queued == count:
                return list(line.waiting)
            await asyncio.sleep(0.001)
        raise AssertionError(f"{count} drawings never waited together")

    bodies = [GOOD[:-1] + f"a{i}=".encode() for i in range(5)]
    burst = [post("198.51.100.9, 203.0.113.1", body) for body in bodies]  # A wrote the left hop itself
    assert await queued(4) == ["203.0.113.1"]  # one out, four waiting
    b = GOOD[:-1] + b"b="
    burst.append(post("203.0.113.2", b))
    assert await queued(5) == ["203.0.113.1", "203.0.113.2"]
    for response, body in zip(await asyncio.gather(*burst), [*bodies, b], strict=True):
        assert response.status == 200 and (await response.json())["echo"] == body.decode()
    sent = fake_torchserve["bodies"]
    assert len(sent) == 3 and b in sent[1], "B's drawing went in the first batch after the one out"


def test_a_ticket_for_a_digit_never_passes_for_a_number():
    """/read's "10" is not /predict's "not a digit" (10), nor its "7" /predict's 7 (web/tickets.py)."""
    tickets, sha = Config().tickets, drawing_hash(GOOD)
    for digit, number in [(NOT_A_DIGIT, "10"), (7, "7")]:
        with pytest.raises(TicketError):
            tickets.check(tickets.issue(sha, "1.0", digit), sha, "1.0", number)
        with pytest.raises(TicketError):
            tickets.check(tickets.issue(sha, "1.0", number), sha, "1.0", digit)
