"""The web app in-process (pytest-aiohttp's aiohttp_client), in front of a fake TorchServe that records
what it is sent (tests/fake_torchserve.py): the proxy's own rules, its use of keys, and its answers when the backend misbehaves."""

import json

import aiohttp
import pytest

from tests.fake_torchserve import INFERENCE_KEY, MANAGEMENT_KEY
from web.app import Config, init_app
from web.feedback_store import NOT_A_DIGIT
from web.tickets import drawing_hash

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
