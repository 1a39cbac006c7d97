"""Shared fixtures: the shipped model and a weak one trained for the tests (tests/models.py), the real
stack (TorchServe + web app) serving the shipped one, a fake TorchServe for the web app in-process,
Chromium for the page; and the markers.

Markers (pyproject.toml; `make test-fast` deselects all four):
  stack      starts real server processes (TorchServe and/or the web app);
  train      trains a model, or needs the session's weak one (trained unless TEST_WEAK_MODEL_DIR);
  browser    drives a real Chromium;
  container  builds an image and runs a pod with podman.
`stack` and `train` are given here to every test that uses the fixtures below that need them (so a new
test cannot forget them); a test module that starts servers or trains by itself marks itself.
"""

import os
from pathlib import Path

import pytest

from tests import containers
from tests.fake_torchserve import fake_app
from tests.models import WEAK_TRAINING, served_model_dir, train_model
from tests.page import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Visit
from tests.stack import Stack, archive

NEEDS_A_STACK = {"stack", "own_stack"}
NEEDS_A_MODEL = {"weak_model_dir"}  # model_dir is the shipped one: nothing to train
NEEDS_A_BROWSER = {"browser"}


def pytest_itemcollected(item):
    # Before -m selects: item.fixturenames holds every fixture a test needs, also through other fixtures
    # (stack -> model_dir).
    used = set(item.fixturenames)
    if used & NEEDS_A_STACK:
        item.add_marker(pytest.mark.stack)
    if used & NEEDS_A_MODEL:
        item.add_marker(pytest.mark.train)
    if used & NEEDS_A_BROWSER:
        item.add_marker(pytest.mark.browser)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Once -m and -k have chosen: the container tests last, their images building meanwhile
    (tests/containers.py start)."""
    boxed = [item for item in items if item.get_closest_marker("container")]
    if boxed:
        items[:] = [item for item in items if not item.get_closest_marker("container")] + boxed
        containers.start(served_model_dir())


def pytest_sessionfinish():
    containers.finish()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """What the stack serves: the shipped model (model/default), unless TEST_MODEL_DIR names another."""
    return served_model_dir()


@pytest.fixture(scope="session")
def model_store(model_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("model_store")
    archive(model_dir, store, "1.0")
    return store


@pytest.fixture(scope="session")
def stack(model_store, tmp_path_factory):
    """The shared stack: tests that use it must leave it as they found it (running, version 1.0)."""
    running = Stack(tmp_path_factory.mktemp("run"), model_store).start()
    yield running
    running.stop()


@pytest.fixture
def own_stack(model_dir, tmp_path):
    """A stack of the test's own, for tests that stop, kill or re-register things."""
    store = tmp_path / "model_store"
    archive(model_dir, store, "1.0")
    running = Stack(tmp_path / "run", store).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def weak_model_dir(tmp_path_factory) -> Path:
    """A deliberately weak version (tests/models.py WEAK_TRAINING), for the evaluation gate and
    shadow/canary tests. TEST_WEAK_MODEL_DIR skips the training."""
    if os.environ.get("TEST_WEAK_MODEL_DIR"):
        return Path(os.environ["TEST_WEAK_MODEL_DIR"]).resolve()
    return train_model(tmp_path_factory.mktemp("weak_model"), WEAK_TRAINING)


@pytest.fixture(scope="session")
def images(model_dir):
    """The project image of the session's model and the local postgres image (tests/containers.py), built
    once for every container test of the session; removed at its end (pytest_sessionfinish)."""
    return containers.build(model_dir)


@pytest.fixture
async def fake_torchserve(aiohttp_server, tmp_path):
    """A fake TorchServe on loopback (tests/fake_torchserve.py): its record and controls as a dict."""
    app, seen = fake_app(tmp_path)
    server = await aiohttp_server(app)
    seen["url"] = str(server.make_url("")).rstrip("/")
    return seen


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (or set CHROMIUM=<path>)")
    from playwright.sync_api import sync_playwright  # here: the unit tests never load it

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser, request):
    """Open the page on a stack; at the end: no outside requests, no script or CSP errors, a screenshot."""
    opened = []

    def open_page(stack, **options) -> Visit:
        opened.append(Visit(browser, stack.web_url + "/", options or DESKTOP))
        return opened[-1]

    yield open_page
    for i, v in enumerate(opened):
        v.screenshot(f"{request.node.name}-{i}")
        outside, problems = v.outside_requests(), list(v.problems)
        v.context.close()
        assert outside == [], f"requests outside {v.origin}: {outside}"
        assert problems == [], problems
