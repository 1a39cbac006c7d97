"""The images the container tests run (tests/test_container.py's pods, tests/test_compose.py's compose
stack), built once per test session and removed at its end (conftest.py).

The first build takes minutes: the image's layer of torch (the CUDA build, several GB) is unpacked and
committed, ~4 minutes of a CI run on 2 cores however the wheels arrive. So the build starts in the
background as soon as container tests are collected (`start`), at the lowest CPU priority, and those
tests run last (conftest.py): the tests before them hide it, and `images` waits for what is left.

Per test session names (digit-recognizer-test-<pid>...): two sessions on one machine (two checkouts)
never meet, and an image of yours (`make image`) is never touched. Later builds hit the layer cache.
"""

import os
import shlex
import signal
import subprocess
import tempfile
import time

from tests.stack import ROOT

NAME = f"digit-recognizer-test-{os.getpid()}"
IMAGE = NAME  # the project image's name (make IMAGE=...): localhost/IMAGE:VERSION
POSTGRES_IMAGE = f"localhost/{NAME}-postgres:15"
VERSIONS = ("1.0-test", "2.0-test")  # tests/test_container.py rolls the second out over the first


def run(*command: str, timeout: float = 1800, env: dict | None = None) -> str:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


_building: tuple[subprocess.Popen, object] | None = None  # the build started, and its output file


def start(model_dir) -> None:
    """Starts `make image` of the session's model as VERSIONS[0], then `make postgres-image`, in the
    background at nice 19 (once a session)."""
    global _building
    if _building is not None:
        return
    image = ["make", "-s", "image", f"IMAGE={IMAGE}", f"VERSION={VERSIONS[0]}", f"MODEL_DIR={model_dir}"]
    postgres = ["make", "-s", "postgres-image", f"POSTGRES_IMAGE={POSTGRES_IMAGE}"]
    script = f"{shlex.join(image)} && {shlex.join(postgres)}"
    output = tempfile.TemporaryFile()  # a file, not a pipe: nobody reads it until the build ends
    process = subprocess.Popen(
        ["nice", "-n", "19", "sh", "-c", script],
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: finish() stops make and podman with it
    )
    _building = process, output


def build(model_dir) -> dict:
    """The images' references, once the build (`start`, here if not yet) has finished."""
    start(model_dir)
    process, output = _building
    waited = time.monotonic()
    process.wait(timeout=1800)
    output.seek(0)
    told = output.read().decode(errors="replace")
    assert process.returncode == 0, f"building the images failed:\n{told[-4000:]}"
    print(f"\nwaited {time.monotonic() - waited:.0f} s for the images")
    return {"image": f"localhost/{IMAGE}:{VERSIONS[0]}", "postgres": POSTGRES_IMAGE}


def finish() -> None:
    """At the session's end: a build still running is stopped, and what the session built is removed."""
    if _building is None:
        return
    process, _ = _building
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    remove()


def remove() -> None:
    """Every image and archive the container tests made (a test may have built VERSIONS[1] too)."""
    for version in VERSIONS:
        subprocess.run(["podman", "rmi", "--force", f"localhost/{IMAGE}:{version}"], capture_output=True)
        (ROOT / "model_store" / f"mnist-{version}.mar").unlink(missing_ok=True)
    subprocess.run(["podman", "rmi", "--force", POSTGRES_IMAGE], capture_output=True)
