"""deploy/kubernetes.yaml's pod on this machine with `podman kube play` (make deploy-local / undeploy-local).

    python -m scripts.local_pod play --image localhost/digit-recognizer:1.0 [--name N] [--port 5500]
    python -m scripts.local_pod down [--name N]

`play` writes build/deploy-local/<name>.yaml: the Deployment of deploy/kubernetes.yaml (the one source
of truth), changed only where one machine differs from a cluster, then plays it (--replace: a pod
already there is torn down first) and waits until /readyz answers 200. The changes:
- the web port is published on 127.0.0.1:<port> (hostPort + hostIP: loopback only); no Service, HPA
  or PDB (podman 4.3 accepts their documents but does nothing with them);
- one replica, the given image (a local tag) and name;
- no probes: podman 4.3 turns an httpGet probe into a `curl` healthcheck run by systemd timers (the
  image has no curl, this sandbox no systemd) and ignores readiness; `play` polls /readyz itself.
Restart policy, volumes, resources and securityContext are kept: podman applies them.
"""

import argparse
import copy
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
OUT_DIR = ROOT / "build" / "deploy-local"


def local_deployment(image: str, name: str, port: int) -> dict:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    deployment = copy.deepcopy(next(doc for doc in docs if doc["kind"] == "Deployment"))
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        container["image"] = image
        container.pop("readinessProbe", None)
        container.pop("livenessProbe", None)
        for published in container.get("ports", []):
            published.update(hostPort=port, hostIP="127.0.0.1")
    return deployment


def manifest_path(name: str) -> Path:
    return OUT_DIR / f"{name}.yaml"


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


def play(image: str, name: str, port: int, timeout: float) -> None:
    if podman("image", "exists", image).returncode != 0:
        sys.exit(f"error: image {image} not found: run `make image` first")
    path = manifest_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(local_deployment(image, name, port), sort_keys=False))
    result = podman("kube", "play", "--replace", str(path))
    if result.returncode != 0:
        sys.exit(f"error: podman kube play failed:\n{result.stdout}{result.stderr}")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout)
    print(f"Digit recognizer (pod {name}-pod-0, image {image}): {url}")


def wait_ready(url: str, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {json.loads(exc.read()).get('error')}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    sys.exit(f"error: {url}/readyz not 200 after {timeout:.0f} s (last: {last}); see `podman logs`")


def down(name: str) -> None:
    path = manifest_path(name)
    if path.exists():
        result = podman("kube", "down", str(path))
        if result.returncode != 0 and "no such pod" not in result.stderr:
            sys.exit(f"error: podman kube down failed:\n{result.stdout}{result.stderr}")
        path.unlink()
    elif podman("pod", "rm", "--force", f"{name}-pod-0").returncode != 0:
        print(f"no pod {name}-pod-0")
        return
    print(f"pod {name}-pod-0 removed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["play", "down"])
    parser.add_argument("--image", help="the image to run (play)")
    parser.add_argument("--name", default="digit-recognizer", help="Deployment name (pod: <name>-pod-0)")
    parser.add_argument("--port", type=int, default=5500, help="host port on 127.0.0.1 for the web app")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for /readyz")
    args = parser.parse_args()
    if args.action == "play":
        play(args.image, args.name, args.port, args.timeout)
    else:
        down(args.name)


if __name__ == "__main__":
    main()
