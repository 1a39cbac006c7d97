"""compose.yaml for real, with podman-compose (Debian's, 1.0.3): `up` of the project image (the session's
model, built once for every container test: tests/containers.py) beside the local PostgreSQL image; held-out
pen digits through /predict; feedback posted through the page's API lands in PostgreSQL; after `down` and
`up` every row is still there, and the secrets (the database password, the tickets' key) are the ones
made at the first start: a ticket handed out before `down` is taken after `up`.

The stack has a project name of its own (dr-compose-test-<pid>: its containers, volumes and networks) and
a free loopback port; everything it made is removed at the end, volumes included.
"""

import json
import os
import re
import subprocess
import time

import pytest

from tests.containers import IMAGE, VERSIONS, run
from tests.stack import ROOT, free_port_base, get_json, post
from train.canvases import drawings
from train.evaluation import read_of

pytestmark = pytest.mark.container

PROJECT = f"dr-compose-test-{os.getpid()}"
VOLUMES = ("feedback-db", "secrets", "torchserve-run")  # compose.yaml's, as podman-compose names them
NETWORKS = ("default", "model", "database")


@pytest.fixture(scope="module")
def compose(images):
    """This module's project, up and ready: the images of the session, a free port."""
    port = free_port_base(1)
    env = {
        **os.environ,
        "IMAGE": f"localhost/{IMAGE}",
        "VERSION": VERSIONS[0],
        "POSTGRES_IMAGE": images["postgres"],
        "WEB_PORT": str(port),
    }

    def command(*args: str) -> str:
        return run("podman-compose", "-p", PROJECT, *args, env=env, timeout=300)

    stack = {"run": command, "url": f"http://127.0.0.1:{port}", "port": port}
    try:
        up(stack)
        yield stack
    finally:
        subprocess.run(["podman-compose", "-p", PROJECT, "down"], cwd=ROOT, env=env, capture_output=True)
        for volume in VOLUMES:
            subprocess.run(["podman", "volume", "rm", f"{PROJECT}_{volume}"], capture_output=True)
        for network in NETWORKS:
            subprocess.run(["podman", "network", "rm", f"{PROJECT}_{network}"], capture_output=True)


def container(service: str) -> str:
    """The running container of a service of the project (found by compose's labels, not by its name)."""
    labels = [
        f"--filter=label=com.docker.compose.{k}={v}" for k, v in (("project", PROJECT), ("service", service))
    ]
    names = run("podman", "ps", *labels, "--format", "{{.Names}}").split()
    assert len(names) == 1, names
    return names[0]


def logs(service: str) -> str:
    """A service's last lines, what it wrote to stdout and stderr alike."""
    told = subprocess.run(["podman", "logs", "--tail=30", container(service)], capture_output=True, text=True)
    return told.stdout + told.stderr


def containers() -> list[str]:
    return run(
        "podman", "ps", "-a", f"--filter=label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}"
    ).split()


def up(compose) -> float:
    """`podman-compose up -d`, then /readyz 200: seconds from the command to ready."""
    started = time.monotonic()
    compose["run"]("up", "-d")
    launched = time.monotonic() - started
    deadline, last = started + 240, None
    while time.monotonic() < deadline:
        try:
            last = get_json(compose["url"] + "/readyz")
            if last[0] == 200:
                ready = time.monotonic() - started
                print(f"\npodman-compose up -d: {launched:.1f} s, /readyz 200 after {ready:.1f} s")
                return ready
        except (OSError, ValueError) as exc:  # not listening yet, or an answer that is not JSON
            last = repr(exc)
        time.sleep(0.5)
    told = {service: logs(service) for service in ("web", "torchserve")}
    raise AssertionError(f"/readyz not 200 within 240 s (last: {last}); {told}")


def psql(sql: str) -> str:
    out = run(
        "podman", "exec", container("postgres"), "psql", "-U", "feedback", "-d", "feedback", "-Atc", sql
    )
    return out.strip()


def answer(url: str, seed: int) -> tuple[int, bytes, dict]:
    """A held-out pen digit through /predict: its label, the drawing, the answer (ticket included)."""
    label, data_url = drawings(limit=1, seed=seed)[0]
    status, body = post(url + "/predict", data_url)
    assert status == 200, body
    return label, data_url, body


def feedback(url: str, label: int, data_url: bytes, given: dict) -> tuple[int, dict]:
    """Posted as the page posts it, and again after a 503 for up to 30 s, as a person told "try again in a
    moment" would (the database not reached yet: /readyz does not wait for it); any other answer is
    final. A last answer that is not 201 carries the web app's and the database's logs, which say why."""
    sent = {"image": data_url.decode(), "label": label, "predicted": given["digit"]}
    sent |= {key: given[key] for key in ("version", "ticket")}
    deadline = time.monotonic() + 30
    while True:
        status, body = post(url + "/api/feedback", json.dumps(sent).encode(), "application/json")
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    if status != 201:
        body = {**body, "logs": {service: logs(service) for service in ("web", "postgres")}}
    return status, body


def test_up_brings_up_the_page_torchserve_and_postgresql_on_loopback_only(compose):
    items = drawings(limit=100, seed=7)
    answers = [post(compose["url"] + "/predict", body) for _, body in items]
    read = [read_of(status, body) for status, body in answers]  # a digit, or 10: "not a digit" (422)
    assert None not in read, answers  # every drawing answered
    right = sum(label == digit for (label, _), digit in zip(items, read, strict=True))
    print(f"\n{right} of 100 held-out pen digits read right through the compose stack")
    assert right >= 93 and answers[0][1]["version"] == VERSIONS[0]
    # The page's port on 127.0.0.1 only; TorchServe and the database publish nothing.
    assert run("podman", "port", container("web")).split() == [
        "5500/tcp",
        "->",
        f"127.0.0.1:{compose['port']}",
    ]
    assert run("podman", "port", container("torchserve")).strip() == ""
    assert run("podman", "port", container("postgres")).strip() == ""
    # TorchServe on its own container, not the web app's: the model network is its only one.
    networks = run(
        "podman", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container("torchserve")
    )
    assert list(json.loads(networks)) == [f"{PROJECT}_model"]


def test_feedback_posted_through_it_survives_down_and_up(compose):
    url = compose["url"]
    ids = []
    for seed in (1, 2):
        label, data_url, given = answer(url, seed)
        status, body = feedback(url, label, data_url, given)
        assert status == 201, body
        ids.append(body["id"])
    stored = psql("SELECT id, label, png_sha256 FROM feedback ORDER BY id")
    assert [int(line.split("|")[0]) for line in stored.splitlines()] == ids
    kept = answer(url, seed=3)  # its ticket is used after the restart

    compose["run"]("down")
    assert containers() == []
    names = run("podman", "volume", "ls", "--format", "{{.Name}}").split()
    assert {f"{PROJECT}_{v}" for v in VOLUMES} <= set(names)  # down keeps the named volumes

    up(compose)
    assert psql("SELECT id, label, png_sha256 FROM feedback ORDER BY id") == stored
    # The same tickets' key (a ticket from before is good) and the same password (the web app writes).
    status, body = feedback(url, *kept)
    assert status == 201 and body["id"] > ids[-1], body
    assert int(psql("SELECT count(*) FROM feedback")) == 3


def test_the_secrets_are_made_at_the_first_start_and_kept_out_of_the_container_definitions(compose):
    store = "/run/compose-secrets"
    listing = run("podman", "exec", container("postgres"), "sh", "-c", f"stat -c '%a %n' {store}/*")
    assert sorted(listing.split("\n")[:-1]) == [f"444 {store}/postgres-password", f"444 {store}/ticket-key"]
    values = [
        run("podman", "exec", container("web"), "cat", f"{store}/{n}")
        for n in ("postgres-password", "ticket-key")
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values) and values[0] != values[1]
    # In the processes' environment only: not in the containers' definitions, which `podman inspect` shows.
    for service in ("postgres", "web"):
        env = run("podman", "inspect", "--format", "{{json .Config.Env}}", container(service))
        assert not any(value in env for value in values), service
