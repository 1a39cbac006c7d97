"""The image and the pods, for real: `make image` from this checkout (carrying the test session's model),
`make deploy-local` (podman kube play of deploy/base/'s web pod and its PostgreSQL pod), real drawings
through the pod, feedback in PostgreSQL (read back with psql inside the database container), a second web
pod on the same database, the database stopped and started, TorchServe killed from the host and healed by
the restart policy, a second model version rolled out over the first keeping every row, `make
undeploy-local`.

Everything here has its own names (images, pods, the database's volume and network:
digit-recognizer-test-<pid>...) and free loopback ports, so a `make deploy-local` of yours is never
touched; the tests remove only what they made. One build for the session (tests/containers.py, shared with
tests/test_compose.py; the first build takes minutes, later ones hit the cache) and one deployment for the
whole file; the tests run in file order and share that deployment.
"""

import asyncio
import collections
import concurrent.futures
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from handler.decode import payload_to_bytes
from scripts.local_pod import local_database, local_deployment, manifests, resolved_env
from tests.clients import SLOW_UPLOAD_HEAD, evaluate
from tests.containers import IMAGE, NAME, POSTGRES_IMAGE, VERSIONS, run
from tests.stack import RATE_LIMITS, ROOT, free_port_base, get_json
from train.canvases import drawings
from web.feedback_store import SCHEMA_VERSION
from web.readiness import Watch

pytestmark = pytest.mark.container

# Per test session (tests/containers.py): two sessions on one machine (two checkouts) never meet.
POD = f"{NAME}-pod-0"
SECOND = f"{NAME}-b"  # a second web Deployment on the same database
DATABASE = f"{NAME}-postgres-pod-0-postgres"  # the database pod's container
TORCHSERVE_PORTS = (8080, 8081, 8082, 7070, 7071)


def make(target: str, version: str, model_dir, port: int, name: str = NAME, *more: str) -> str:
    settings = [f"IMAGE={IMAGE}", f"VERSION={version}", f"MODEL_DIR={model_dir}", f"LOCAL_NAME={name}"]
    return run(
        "make",
        "-s",
        target,
        *settings,
        f"LOCAL_PORT={port}",
        f"POSTGRES_IMAGE={POSTGRES_IMAGE}",
        # One address sends every test's requests: the limiter (tested in test_ratelimit) stays out of the way.
        f"LOCAL_RATE_LIMITS={RATE_LIMITS}",
        *more,
    )


def inspect(container: str, template: str) -> str:
    return run("podman", "inspect", "--format", template, container).strip()


def post(
    url: str, body: bytes, content_type: str = "text/plain", path: str = "/predict"
) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())
    except (OSError, http.client.HTTPException) as exc:
        return 0, "", {"error": repr(exc)}


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


def psql(sql: str) -> str:
    """sql run by psql inside the database container, as the web app's user, on its database."""
    return run("podman", "exec", DATABASE, "psql", "-U", "feedback", "-d", "feedback", "-Atc", sql).strip()


def rows() -> int:
    return int(psql("SELECT count(*) FROM feedback"))


def send_feedback(url: str, seed: int) -> tuple[int, dict]:
    """A held-out pen digit through /predict, then the page's feedback on its answer (with the answer's
    ticket when it carries one); the feedback's status and body."""
    label, data_url = drawings(limit=1, seed=seed)[0]
    status, _, answer = post(url, data_url)
    assert status == 200, answer
    feedback = {"image": data_url.decode(), "label": label, "predicted": answer["digit"]}
    feedback |= {key: answer[key] for key in ("version", "ticket") if key in answer}
    status, _, body = post(url, json.dumps(feedback).encode(), "application/json", "/api/feedback")
    return status, body


def leftovers() -> str:
    pods = run("podman", "pod", "ps", "--filter", f"name={NAME}", "--format", "{{.Name}}")
    containers = run("podman", "ps", "-a", "--filter", f"name={NAME}", "--format", "{{.Names}}")
    return (pods + containers).strip()


@pytest.fixture(scope="module")
def image(images):
    """Version 1.0-test of the session's model (`make image`, tests/containers.py, shared with
    tests/test_compose.py); removed at the session's end."""
    return images["image"]


@pytest.fixture(scope="module")
def pod(image, model_dir):
    """`make deploy-local` of the test image on a free loopback port; `make undeploy-local` at the end, and
    the database's volume and network removed (undeploy keeps them, as a cluster keeps its claims)."""
    port = free_port_base(1)
    try:
        out = make("deploy-local", VERSIONS[0], model_dir, port)
        url = f"http://127.0.0.1:{port}"
        assert url in out
        # stored: feedback answered 201 so far, by every web pod of this database (the tests add to it).
        yield {"url": url, "port": port, "model_dir": model_dir, "stored": 0}
    finally:
        for name in (SECOND, NAME):
            subprocess.run(
                ["make", "-s", "undeploy-local", f"LOCAL_NAME={name}"], cwd=ROOT, capture_output=True
            )
        subprocess.run(["podman", "volume", "rm", f"{NAME}-postgres-data"], capture_output=True)
        subprocess.run(["podman", "network", "rm", f"{NAME}-network"], capture_output=True)


def test_image_runs_as_a_non_root_user_and_installs_torch_before_our_code(image):
    assert inspect(image, "{{.Config.User}}") == "10001"
    assert run("podman", "run", "--rm", image, "id", "-u").strip() == "10001"
    # A code change leaves the requirements layer (torch) in the cache: it comes before any code.
    lines = (ROOT / "deploy" / "Containerfile").read_text().splitlines()
    requirements = next(i for i, line in enumerate(lines) if "pip install" in line)
    code = [i for i, line in enumerate(lines) if line.startswith("COPY") and "requirements" not in line]
    assert code and requirements < min(code)
    # The image's Python and Java are Debian's 3.11 and 17.
    versions = run("podman", "run", "--rm", image, "sh", "-c", "python --version; java -version 2>&1")
    assert "Python 3.11" in versions and 'version "17' in versions
    # Without TORCH_INDEX_URL, torch is PyPI's: the CUDA build, which deploy/gpu/ runs on GPU nodes.
    cuda = run("podman", "run", "--rm", image, "python", "-c", "import torch; print(torch.version.cuda)")
    assert cuda.strip() not in ("", "None"), cuda


def test_make_image_hands_the_torch_index_to_the_build():
    """`make image TORCH_INDEX_URL=...` reaches the Containerfile's ARG; unset, the Containerfile's default
    (PyPI) stays. Only PyPI is reachable here, so the CPU index's build is not built (docs/deployment.md)."""
    cpu = "https://download.pytorch.org/whl/cpu"
    dry = ["make", "-n", "image", "MODEL_DIR=model/default", "IMAGE=x"]
    assert f"--build-arg TORCH_INDEX_URL={cpu} " in run(*dry, f"TORCH_INDEX_URL={cpu}")
    assert "TORCH_INDEX_URL" not in run(*dry)
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://pypi.org/simple\n" in containerfile
    assert '--index-url "$TORCH_INDEX_URL"' in containerfile


async def slow_uploads(port: int, connections: int) -> collections.Counter:
    """`connections` uploads of 1 MiB at once, each in 64 KiB every half second (8 s, just inside the
    web app's 10 s deadline), sent on whatever it answers: (status, refused before it was read) each."""

    async def one() -> tuple:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.ensure_future(reader.readuntil(b"}"))  # the head and the JSON error
        try:
            writer.write(SLOW_UPLOAD_HEAD)
            for _ in range(16):
                writer.write(b"d" * 65536)
                await asyncio.wait_for(writer.drain(), 5)  # a server no longer reading: stop sending
                await asyncio.sleep(0.5)
        except (OSError, TimeoutError):
            pass
        try:
            response = await asyncio.wait_for(answer, 15)
            return int(response.split()[1]), b"uploads in progress" in response
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
            return "no answer", None
        finally:
            writer.close()

    return collections.Counter(await asyncio.gather(*(one() for _ in range(connections))))


def test_the_web_container_at_its_memory_limit_stays_up_under_200_slow_1_mib_uploads(image):
    """The web container alone, with the manifest's memory limit (no swap) and securityContext, under 200
    concurrent slow 1 MiB uploads (web/uploads.py: large bodies hold half the bytes in flight, the rest
    503 before they are read; those let in are read whole and answered 503: there is no TorchServe):
    never OOM-killed, and meanwhile it answers /healthz and a small body's own 400 (a bad ?version=)."""
    (deployment,) = manifests("Deployment")
    (web,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "web"]
    memory = web["resources"]["limits"]["memory"]
    assert memory == "192Mi"  # the number the docs and this test's name give (docs/limits.md)
    port, name = free_port_base(1), f"{NAME}-uploads"
    env = {"FEEDBACK_DB": "/tmp/feedback.sqlite3", "WEB_RATE_LIMITS": RATE_LIMITS}
    run(
        "podman", "run", "-d", "--name", name, f"--memory={memory.removesuffix('Mi')}m",
        f"--memory-swap={memory.removesuffix('Mi')}m", "--read-only", "--cap-drop=all",
        "--security-opt=no-new-privileges", f"--publish=127.0.0.1:{port}:5500",
        *(f"--env={k}={v}" for k, v in env.items()), image, "web",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        try:
            return get_json(url + "/healthz") == (200, {"status": "alive"})
        except OSError:  # not listening (yet)
            return False

    try:
        wait_for(alive, 60, "the web container answers")
        checks, done = collections.Counter(), threading.Event()

        def check() -> None:
            while not done.wait(0.5):
                checks["healthz", alive()] += 1
                checks["bad version", post(url, b"x", path="/predict?version=../x")[0]] += 1

        checker = threading.Thread(target=check)
        checker.start()
        try:
            uploads = asyncio.run(slow_uploads(port, 200))
        finally:
            done.set()
            checker.join()
        peak = run("podman", "exec", name, "sh", "-c", "cat /sys/fs/cgroup/memory.peak "
                   "/sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null || true").split()  # fmt: skip
        print(f"\nuploads {dict(uploads)}, checks {dict(checks)}, peak memory {peak} bytes of {memory}")
        assert inspect(name, "{{.State.OOMKilled}}") == "false"
        assert inspect(name, "{{.State.Status}}") == "running"
        assert set(checks) == {("healthz", True), ("bad version", 400)} and checks["healthz", True] >= 10
        assert {status for status, _ in uploads} <= {503, 408}, uploads  # every upload answered
        refused = sum(n for (_, before), n in uploads.items() if before)
        assert refused >= 100 and 200 - refused >= 8, uploads  # the large half's 8 MiB were let in
        assert alive()
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)


def test_pod_runs_as_the_manifest_says(pod):
    """podman applied the securityContext, resources and restart policy of deploy/kubernetes.yaml."""
    template = (
        "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.EffectiveCaps}} {{.HostConfig.SecurityOpt}}"
    )
    for container in ("torchserve", "web"):
        assert inspect(f"{POD}-{container}", template) == "true 10001:10001 [] [no-new-privileges]"
        assert inspect(f"{POD}-{container}", "{{.HostConfig.RestartPolicy.Name}}") == "always"
    limits = {
        c["name"]: c["resources"]["limits"]
        for c in local_deployment("x", "x", 1)["spec"]["template"]["spec"]["containers"]
    }
    mebibytes = {name: int(limit["memory"].removesuffix("Mi")) * 2**20 for name, limit in limits.items()}
    assert int(inspect(f"{POD}-torchserve", "{{.HostConfig.Memory}}")) == mebibytes["torchserve"]
    assert int(inspect(f"{POD}-web", "{{.HostConfig.Memory}}")) == mebibytes["web"]
    # The database pod too: the StatefulSet's user (the official image's postgres, 999), read-only root.
    assert inspect(DATABASE, template) == "true 999:999 [] [no-new-privileges]"
    assert inspect(DATABASE, "{{.HostConfig.RestartPolicy.Name}}") == "always"
    (postgres,) = local_database(NAME)["spec"]["template"]["spec"]["containers"]
    assert (
        int(inspect(DATABASE, "{{.HostConfig.Memory}}"))
        == int(postgres["resources"]["limits"]["memory"].removesuffix("Mi")) * 2**20
    )


def test_pod_reads_real_drawings_as_well_as_the_process_stack(pod, stack):
    """The same 1,000 held-out pen digits through the pod and through the process stack, in this run."""
    items = drawings(limit=1000, seed=0)
    in_pod, on_host = evaluate(pod["url"], items), evaluate(stack.web_url, items)
    pod_right = sum(label == read for label, read, _ in in_pod)
    host_right = sum(label == read for label, read, _ in on_host)
    agree = sum(a[1] == b[1] for a, b in zip(in_pod, on_host, strict=True))
    print(f"\npod {pod_right / 10:.1f}%, process stack {host_right / 10:.1f}%, same answer {agree / 10:.1f}%")
    assert None not in {read for _, read, _ in in_pod}  # every drawing answered
    assert pod_right >= host_right - 5  # within 0.5 points
    assert agree >= 990  # same model, same handler: the same reading, give or take a float's last bits
    assert pod_right >= 900


def test_pod_answers_bad_input_with_its_4xx_json(pod):
    status, content_type, body = post(pod["url"], b"data:image/png;base64,%%%")
    assert status == 400 and content_type.startswith("application/json") and body["error"]
    status, _, body = post(pod["url"], b"not a drawing at all")
    assert 400 <= status < 500 and body["error"]
    status, _, body = post(pod["url"], b"x" * (2 * 1024 * 1024))
    assert status == 413 and body["error"]
    assert get_json(pod["url"] + "/readyz") == (200, {"status": "ready"})  # nothing of that hurt the pod


def test_feedback_posted_through_the_pod_is_in_postgresql(pod):
    """The web pod writes to the database pod (FEEDBACK_DB from the Secret), not to a file of its own; the
    schema was migrated at start; psql inside the database container reads the rows back."""
    assert psql("SELECT version FROM schema_version") == str(SCHEMA_VERSION)
    label, data_url = drawings(limit=1, seed=1)[0]
    ids = []
    for _ in range(2):
        status, body = send_feedback(pod["url"], seed=1)
        assert status == 201, body
        ids.append(body["id"])
    pod["stored"] += 2
    assert ids[1] == ids[0] + 1
    assert rows() == pod["stored"]
    png = payload_to_bytes(data_url.decode())
    stored = psql(f"SELECT label, version, png_sha256, length(input_28x28) FROM feedback WHERE id = {ids[1]}")
    assert stored == f"{label}|{VERSIONS[0]}|{hashlib.sha256(png).hexdigest()}|784"
    # The database pod publishes nothing on the host: only the web pods reach it, on its own network.
    infra = run("podman", "pod", "inspect", "--format", "{{.InfraContainerID}}", f"{NAME}-postgres-pod-0")
    assert inspect(infra.strip(), "{{json .HostConfig.PortBindings}}") in ("{}", "null")
    assert f"{NAME}-network" in inspect(infra.strip(), "{{json .NetworkSettings.Networks}}")


def test_the_pod_refuses_a_forged_or_reused_ticket_and_stores_nothing_for_either(pod):
    """Feedback only for answers the pod gave: its key (the Secret's) signs /predict's ticket; a ticket
    with one signature digit changed is 403, the genuine one is stored once: sent again, the same feedback
    gets its first id (a retry), other feedback on it 409."""
    label, data_url = drawings(limit=1, seed=3)[0]
    status, _, answer = post(pod["url"], data_url)
    assert status == 200, answer
    feedback = {"image": data_url.decode(), "label": label, "predicted": answer["digit"]}
    feedback["version"] = answer["version"]
    ticket = answer["ticket"]
    forged = ticket[:-1] + ("0" if ticket[-1] != "0" else "1")
    before = rows()

    def send(ticket: str, **changed) -> tuple[int, dict]:
        body = json.dumps(feedback | changed | {"ticket": ticket}).encode()
        status, _, answer = post(pod["url"], body, "application/json", "/api/feedback")
        return status, answer

    assert send(forged)[0] == 403
    assert rows() == before
    first = send(ticket)
    assert first[0] == 201
    assert send(ticket) == first
    assert send(ticket, label=(label + 1) % 10)[0] == 409
    assert rows() == before + 1
    pod["stored"] += 1


def test_two_web_pods_write_to_one_database(pod):
    """A second web Deployment on the same database: feedback sent to both at once, every 2xx a row."""
    port = free_port_base(1)
    out = make("deploy-local", VERSIONS[0], pod["model_dir"], port, SECOND, f"LOCAL_DATABASE={NAME}")
    assert "database pod" not in out  # the running database is used, not a second one played
    urls = [pod["url"], f"http://127.0.0.1:{port}"]
    before = rows()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: send_feedback(urls[i % 2], seed=i)[0], range(40)))
    print(f"\nfeedback through two web pods: {answers.count(201)} of 40 stored")
    assert set(answers) == {201}  # nothing refused: the database takes both pods' writes
    assert rows() - before == sum(200 <= status < 300 for status in answers)
    pod["stored"] += answers.count(201)
    run("make", "-s", "undeploy-local", f"LOCAL_NAME={SECOND}")
    assert inspect(DATABASE, "{{.State.Status}}") == "running"  # the database is not the second pod's


def test_a_stopped_database_makes_feedback_503_while_predict_answers_and_feedback_comes_back(pod):
    web_started = inspect(f"{POD}-web", "{{.State.StartedAt}}")
    run("podman", "stop", DATABASE)  # a deliberate stop: the restart policy leaves it stopped
    try:
        for seed in range(3):  # send_feedback asserts that /predict answered 200 each time
            status, body = send_feedback(pod["url"], seed)
            assert status == 503 and body["error"], body
        assert get_json(pod["url"] + "/readyz") == (200, {"status": "ready"})  # predictions need no database
    finally:
        run("podman", "start", DATABASE)
    status, body = wait_for(
        lambda: (r := send_feedback(pod["url"], seed=4))[0] == 201 and r, 60, "feedback stored again"
    )
    pod["stored"] += 1
    assert rows() == pod["stored"]  # the refused ones stored nothing, the one after is there
    assert inspect(f"{POD}-web", "{{.State.StartedAt}}") == web_started  # the web app reconnected itself


def test_torchserve_ports_are_not_reachable_from_the_host(pod):
    infra = run("podman", "pod", "inspect", "--format", "{{.InfraContainerID}}", POD).strip()
    address = inspect(infra, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    assert address, "the pod has no address"

    def reachable(host: str, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((host, port)) == 0

    # The test can fail: the web port does answer on the pod's address, and TorchServe does listen
    # on the pod's loopback (seen from inside the pod).
    assert reachable(address, 5500)
    probe = "import socket; print(socket.create_connection(('127.0.0.1', 8080), 1).getpeername())"
    assert "8080" in run("podman", "exec", f"{POD}-web", "python", "-c", probe)
    for port in TORCHSERVE_PORTS:
        assert not reachable(address, port), f"TorchServe port {port} reachable at the pod's address"
    published = inspect(infra, "{{json .HostConfig.PortBindings}}")  # the pod's ports live on its infra
    assert json.loads(published) == {"5500/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(pod["port"])}]}


def test_killed_torchserve_gives_503_and_the_pod_heals_without_restarting_the_web_app(pod):
    web_started = inspect(f"{POD}-web", "{{.State.StartedAt}}")
    web_restarts = inspect(f"{POD}-web", "{{.RestartCount}}")
    torchserve_pid = int(inspect(f"{POD}-torchserve", "{{.State.Pid}}"))
    torchserve_restarts = int(inspect(f"{POD}-torchserve", "{{.RestartCount}}"))
    body = drawings(limit=1, seed=1)[0][1]
    assert post(pod["url"], body)[0] == 200

    os.kill(torchserve_pid, signal.SIGKILL)  # not `podman kill`: that is a deliberate stop, not restarted
    killed = time.monotonic()
    status, content_type, answer = wait_for(
        lambda: (r := post(pod["url"], body))[0] != 200 and r, 30, "a non-200 answer while TorchServe is down"
    )
    assert status == 503 and content_type.startswith("application/json") and answer["error"], answer
    # /readyz answers from memory: not ready within its bound of the kill (web/readiness.py), a second
    # of this machine's added.
    wait_for(lambda: get_json(pod["url"] + "/readyz")[0] == 503, Watch(None).bound + 1, "the pod unready")
    print(f"\nunready {time.monotonic() - killed:.1f} s after TorchServe was killed")

    wait_for(lambda: get_json(pod["url"] + "/readyz")[0] == 200, 120, "the pod ready again")
    print(f"\nready again {time.monotonic() - killed:.1f} s after TorchServe was killed")
    assert post(pod["url"], body)[0] == 200
    assert int(inspect(f"{POD}-torchserve", "{{.RestartCount}}")) == torchserve_restarts + 1
    assert int(inspect(f"{POD}-torchserve", "{{.State.Pid}}")) != torchserve_pid
    assert inspect(f"{POD}-web", "{{.State.StartedAt}}") == web_started
    assert inspect(f"{POD}-web", "{{.RestartCount}}") == web_restarts


def test_a_new_model_version_is_rolled_out_as_a_new_image_tag_and_keeps_every_row(pod):
    """Version 2.0-test (the same weights, archived as 2.0-test: the build reuses every layer but the
    model's) replaces the web pod running 1.0-test; podman replaces the pod, a cluster would roll it. The
    database pod stays as it is, and every feedback row with it."""
    body = drawings(limit=1, seed=2)[0][1]
    assert post(pod["url"], body)[2]["version"] == VERSIONS[0]
    before = psql("SELECT id, png_sha256 FROM feedback ORDER BY id")
    assert len(before.splitlines()) == pod["stored"] > 0
    database_started = inspect(DATABASE, "{{.State.StartedAt}}")
    make("image", VERSIONS[1], pod["model_dir"], pod["port"])
    # The new tag shares every layer with the old one (torch included) but the model's and the one after.
    layers = [json.loads(inspect(f"localhost/{IMAGE}:{v}", "{{json .RootFS.Layers}}")) for v in VERSIONS]
    assert layers[1][:-2] == layers[0][:-2] and layers[1][-2] != layers[0][-2]
    started = time.monotonic()
    make("deploy-local", VERSIONS[1], pod["model_dir"], pod["port"])
    print(f"\npod replaced and ready in {time.monotonic() - started:.1f} s (no answers meanwhile)")
    status, _, answer = post(pod["url"], body)
    assert status == 200 and answer["version"] == VERSIONS[1]
    assert get_json(pod["url"] + "/api/models")[1]["versions"] == [VERSIONS[1]]
    assert inspect(f"{POD}-torchserve", "{{.ImageName}}") == f"localhost/{IMAGE}:{VERSIONS[1]}"
    assert inspect(DATABASE, "{{.State.StartedAt}}") == database_started
    assert psql("SELECT id, png_sha256 FROM feedback ORDER BY id") == before
    status, body = send_feedback(pod["url"], seed=5)  # and the new version's feedback joins them
    assert status == 201, body
    pod["stored"] += 1
    assert psql(f"SELECT version FROM feedback WHERE id = {body['id']}") == VERSIONS[1]


def test_the_nightly_backup_and_the_documented_restore_bring_back_every_row(pod, tmp_path):
    """The CronJob's own command (deploy/base/postgres-backup.yaml) in the database image, on the
    database's network with the Secret's password over TCP, as the Job would run it; then the rows
    lost and docs/database.md's restore, while the web pod runs on."""
    (cronjob,) = manifests("CronJob")
    (job,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = [f"--env={var['name']}={var['value']}" for var in resolved_env(job["env"])]
    script = job["args"][0].replace("$$", "$")  # Kubernetes' escape, undone as the kubelet does
    tmp_path.chmod(0o777)  # the backup volume, writable by the Job's user (fsGroup in a cluster)
    network = f"--network={NAME}-network"
    volume = f"--volume={tmp_path}:/backup"
    run(
        "podman",
        "run",
        "--rm",
        network,
        "--user=999:999",
        "--read-only",
        *env,
        volume,
        POSTGRES_IMAGE,
        *job["command"],
        script,
    )
    (dump,) = tmp_path.glob("feedback-*.dump")
    before = psql("SELECT id, png_sha256 FROM feedback ORDER BY id")
    psql("DELETE FROM feedback")  # what a backup is for
    assert rows() == 0
    restore = [
        "pg_restore",
        "-U",
        "feedback",
        "-d",
        "feedback",
        "--clean",
        "--if-exists",
        "--single-transaction",
    ]
    with dump.open("rb") as stdin:
        subprocess.run(
            ["podman", "exec", "-i", DATABASE, *restore], stdin=stdin, check=True, capture_output=True
        )
    assert psql("SELECT id, png_sha256 FROM feedback ORDER BY id") == before
    status, body = send_feedback(pod["url"], seed=6)  # the web pod writes on, after the last restored id
    assert status == 201, body
    assert body["id"] > int(before.splitlines()[-1].split("|")[0])
    pod["stored"] += 1


def test_undeploy_leaves_nothing_running_but_keeps_the_data_for_the_next_deploy(pod):
    run("make", "-s", "undeploy-local", f"LOCAL_NAME={NAME}")
    assert leftovers() == ""
    assert post(pod["url"], b"data:")[0] == 0  # nothing answers on the port any more
    # The volume stays, as a cluster keeps a StatefulSet's claims: a new database pod finds every row.
    make("deploy-local", VERSIONS[1], pod["model_dir"], pod["port"])
    assert rows() == pod["stored"]
    run("make", "-s", "undeploy-local", f"LOCAL_NAME={NAME}")
    assert leftovers() == ""
