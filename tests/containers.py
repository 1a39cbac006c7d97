"""The images the container tests run (tests/test_container.py's pods, tests/test_compose.py's compose
stack), built once per test session by conftest.py's `images` fixture and removed at its end.

Per test session names (digit-recognizer-test-<pid>...): two sessions on one machine (two checkouts)
never meet, and an image of yours (`make image`) is never touched. The first build takes minutes (torch),
later ones hit the layer cache.
"""

import os
import subprocess
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


def build(model_dir) -> dict:
    """`make image` of the session's model as VERSIONS[0] and `make postgres-image`: their references."""
    started = time.monotonic()
    run("make", "-s", "image", f"IMAGE={IMAGE}", f"VERSION={VERSIONS[0]}", f"MODEL_DIR={model_dir}")
    print(f"\nmake image: {time.monotonic() - started:.0f} s")
    run("make", "-s", "postgres-image", f"POSTGRES_IMAGE={POSTGRES_IMAGE}")
    return {"image": f"localhost/{IMAGE}:{VERSIONS[0]}", "postgres": POSTGRES_IMAGE}


def remove() -> None:
    """Every image and archive the container tests made (a test may have built VERSIONS[1] too)."""
    for version in VERSIONS:
        subprocess.run(["podman", "rmi", "--force", f"localhost/{IMAGE}:{version}"], capture_output=True)
        (ROOT / "model_store" / f"mnist-{version}.mar").unlink(missing_ok=True)
    subprocess.run(["podman", "rmi", "--force", POSTGRES_IMAGE], capture_output=True)
