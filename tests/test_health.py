"""/healthz and /readyz in-process (pytest-aiohttp), in front of a fake TorchServe whose answers the tests
choose (tests/fake_torchserve.py): liveness never depends on TorchServe, readiness is a real request to the default model."""

import pytest

from tests.fake_torchserve import INFERENCE_KEY as KEY
from tests.stack import free_port_base, get_json
from web.app import Config, init_app
from web.torchserve import READINESS_PROBE


async def client_for(aiohttp_client, url, run_dir):
    return await aiohttp_client(init_app(Config(inference_url=url, management_url=url, run_dir=run_dir)))


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


def test_web_host_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("WEB_HOST", raising=False)
    assert Config.from_env().host == "127.0.0.1"  # a host machine: loopback unless told otherwise
    monkeypatch.setenv("WEB_HOST", "0.0.0.0")
    assert Config.from_env().host == "0.0.0.0"


def scale(stack, workers: int) -> None:
    stack.torchserve.manage(
        "PUT", f"/models/mnist?min_worker={workers}&max_worker={workers}&synchronous=true"
    )


def test_real_stack_ready_only_while_a_worker_serves_the_default_model(own_stack):
    """The real TorchServe: ready with workers; not ready with none (TorchServe itself still answers);
    not ready once TorchServe is stopped; alive throughout."""
    assert get_json(own_stack.web_url + "/readyz") == (200, {"status": "ready"})
    scale(own_stack, 0)
    status, body = get_json(own_stack.web_url + "/readyz")
    assert status == 503 and "no ready worker" in body["error"]
    scale(own_stack, 1)
    assert get_json(own_stack.web_url + "/readyz") == (200, {"status": "ready"})
    own_stack.stop_torchserve()
    status, body = get_json(own_stack.web_url + "/readyz")
    assert status == 503 and "does not answer" in body["error"]
    assert get_json(own_stack.web_url + "/healthz") == (200, {"status": "alive"})
