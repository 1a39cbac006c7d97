"""deploy/base/'s pods on this machine with `podman kube play` (make deploy-local / undeploy-local).

    python -m scripts.local_pod play --image localhost/digit-recognizer:1.0 [--name N] [--port 5500]
                                     [--database D] [--postgres-image IMAGE]
    python -m scripts.local_pod down [--name N]

`play` writes build/deploy-local/<name>.yaml (the web pod) and, unless it already runs,
build/deploy-local/<database>-postgres.yaml (the database pod), both taken from deploy/base/ (the one
source of truth) and changed only where one machine differs from a cluster, plays them and waits until
/readyz answers 200. As in a cluster, the database outlives the web pods: a second `play` (another
VERSION: a rollout) replaces the web pod only, and the data lives in the named volume
<database>-postgres-data, created once and kept by `down` too (`podman volume rm` deletes it).
--database names another deployment's database: web pods of two names share it (scaling out).

The changes from deploy/base/:
- the web port is published on 127.0.0.1:<port> (hostPort + hostIP: loopback only); the database's port
  is published nowhere: the pods join a podman network of the database's own, <database>-network, on
  which podman's DNS answers `postgres` (the Service's name in a cluster) with the database pod's
  address, wherever a restart put it;
- Secrets and $(VAR) references are filled in here: podman 4.3 keeps `$(VAR)` as it is and fails on
  secretKeyRef ("secret ... is not valid JSON"). A value comes from the env file the kustomization's
  secretGenerator reads (deploy/base/secrets/, git-ignored) when there is one, else from
  build/deploy-local/secrets/, made once with a random value and kept: the database takes its password
  at its first start only, so a rollout's web pod must get the same one;
- the StatefulSet becomes a Deployment of one pod (podman 4.3 plays no StatefulSet), its claim template
  the volume above, without its containerPort (which podman 4.3 would publish on all host addresses);
  its image is deploy/local/'s substitute (kustomize `images:`) unless given;
- one replica, the given image (a local tag) and name; no Service, HPA, PDB, NetworkPolicy or CronJob;
- each emptyDir is named <deployment>-<volume>: podman 4.3 plays an emptyDir as a named volume of the
  manifest's name (`run`), shared by every pod that names it so (one TorchServe's key file in another
  pod); `down` removes them, as a pod's end removes its emptyDirs;
- no probes: podman 4.3 turns an httpGet probe into a `curl` healthcheck run by systemd timers (the
  image has no curl, this sandbox no systemd) and ignores readiness; `play` polls /readyz itself.
Restart policy, volumes, resources and securityContext are kept: podman applies them.
"""

import argparse
import copy
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "base"
LOCAL_OVERLAY = ROOT / "deploy" / "local" / "kustomization.yaml"
OUT_DIR = ROOT / "build" / "deploy-local"
LOCAL_SECRETS = OUT_DIR / "secrets"  # <secret>.<key>: values made here for want of deploy/base/secrets/
DATABASE_HOST = "postgres"  # the Service's name in deploy/base/postgres.yaml, and FEEDBACK_DB's host


def manifests(kind: str) -> list[dict]:
    docs = []
    for path in sorted(BASE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return [doc for doc in docs if doc["kind"] == kind]


def env_file(path: Path) -> dict:
    """A kustomize env file: key=value lines; blank lines and # comments skipped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def secret_value(name: str, key: str) -> str:
    """A key of a Secret the kustomization's secretGenerator makes: from its env file when there is
    one (the cluster's), else a random value made once for local plays and kept."""
    generators = yaml.safe_load((BASE / "kustomization.yaml").read_text())["secretGenerator"]
    generator = next(g for g in generators if g["name"] == name)
    for path in (BASE / f for f in generator["envs"]):
        if path.exists() and key in (values := env_file(path)):
            return values[key]
    return local_secret(f"{name}.{key}")


def local_secret(name: str) -> str:
    """LOCAL_SECRETS/name's value, made (64 random hex digits, fit for a URL) if there is none yet; two
    plays at once agree on one (the file appears whole, by a link, or not at all)."""
    path = LOCAL_SECRETS / name
    if not path.exists():
        LOCAL_SECRETS.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = LOCAL_SECRETS / f".{name}.{os.getpid()}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another play made it first: theirs it is
        finally:
            draft.unlink()
    return path.read_text()


def resolved_env(env: list[dict]) -> list[dict]:
    """Kubernetes' env semantics, as far as deploy/base uses them: secretKeyRef values and $(VAR)
    references to variables defined earlier in the list."""
    values, out = {}, []
    for var in env:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secret_value(ref["name"], ref["key"])
        else:
            value = re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), var["value"])
        values[var["name"]] = value
        out.append({"name": var["name"], "value": value})
    return out


def local_image(image: str) -> str:
    """deploy/local/'s kustomize `images:` applied to one image reference."""
    name, _, _ = image.partition(":")
    for rule in yaml.safe_load(LOCAL_OVERLAY.read_text())["images"]:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule['newTag']}"
    return image


def local_pod_spec(spec: dict, name: str) -> dict:
    """Probes off, env filled in, and each emptyDir named for its Deployment: podman 4.3 plays an emptyDir
    as a named volume called as the manifest calls it, which every pod of that name would share."""
    renamed = {v["name"]: f"{name}-{v['name']}" for v in spec.get("volumes", []) if "emptyDir" in v}
    for volume in spec.get("volumes", []):
        volume["name"] = renamed.get(volume["name"], volume["name"])
    for container in spec["containers"]:
        container.pop("readinessProbe", None)
        container.pop("livenessProbe", None)
        container["env"] = resolved_env(container.get("env", []))
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
    return spec


def empty_dirs(document: dict) -> list[str]:
    return [v["name"] for v in document["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v]


def local_deployment(image: str, name: str, port: int, rate_limits: str | None = None) -> dict:
    """The web Deployment, one replica of `image`, the web port on 127.0.0.1:port; rate_limits, if given,
    replaces the web app's WEB_RATE_LIMITS (docs/limits.md): a benchmark or test loading the pod from one
    address would otherwise measure the limiter."""
    deployment = copy.deepcopy(manifests("Deployment")[0])
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    spec = local_pod_spec(deployment["spec"]["template"]["spec"], name)
    for container in spec["containers"]:
        container["image"] = image
        for published in container.get("ports", []):
            published.update(hostPort=port, hostIP="127.0.0.1")
        if rate_limits and container["name"] == "web":
            env = [var for var in container.get("env", []) if var["name"] != "WEB_RATE_LIMITS"]
            container["env"] = [*env, {"name": "WEB_RATE_LIMITS", "value": rate_limits}]
    return deployment


def volume_name(database: str) -> str:
    return f"{database}-postgres-data"


def network_name(database: str) -> str:
    return f"{database}-network"


def local_database(database: str, image: str | None = None) -> dict:
    """The StatefulSet as a Deployment of one pod (<database>-postgres-pod-0), its claim template the
    named volume <database>-postgres-data."""
    statefulset = copy.deepcopy(manifests("StatefulSet")[0])
    spec = local_pod_spec(statefulset["spec"]["template"]["spec"], f"{database}-postgres")
    for container in spec["containers"]:
        container["image"] = image or local_image(container["image"])
        # podman 4.3 publishes a containerPort without hostPort on every host address: only the pods on
        # the database's network are to reach it.
        container.pop("ports", None)
    for claim in statefulset["spec"]["volumeClaimTemplates"]:
        volume = {"persistentVolumeClaim": {"claimName": volume_name(database)}}
        spec.setdefault("volumes", []).append({"name": claim["metadata"]["name"], **volume})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{database}-postgres", "labels": statefulset["metadata"]["labels"]},
        "spec": {
            "replicas": 1,
            "selector": statefulset["spec"]["selector"],
            "template": statefulset["spec"]["template"],
        },
    }


def manifest_path(name: str) -> Path:
    return OUT_DIR / f"{name}.yaml"


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True)


def kube_play(document: dict, name: str, network: str) -> None:
    path = manifest_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = podman("kube", "play", "--replace", "--network", network, str(path))
    if result.returncode != 0:
        sys.exit(f"error: podman kube play failed:\n{result.stdout}{result.stderr}")


def start_database(database: str, image: str | None, timeout: float) -> None:
    """The database pod, played unless it already runs (a rollout leaves it alone)."""
    pod = f"{database}-postgres-pod-0"
    if podman("network", "exists", network_name(database)).returncode != 0:
        podman("network", "create", network_name(database))  # with DNS, as podman makes them
    if podman("pod", "inspect", "--format", "{{.State}}", pod).stdout.strip() != "Running":
        document = local_database(database, image)
        (container,) = document["spec"]["template"]["spec"]["containers"]
        if podman("image", "exists", container["image"]).returncode != 0:
            sys.exit(f"error: image {container['image']} not found: run `make postgres-image` first")
        # Created once: podman plays a claim as this volume, but fails on a PersistentVolumeClaim
        # document whose volume exists already.
        if podman("volume", "exists", volume_name(database)).returncode != 0:
            podman("volume", "create", volume_name(database))
        kube_play(document, f"{database}-postgres", f"{network_name(database)}:alias={DATABASE_HOST}")
        print(f"database pod {pod} (image {container['image']}, volume {volume_name(database)})")
    deadline = time.monotonic() + timeout
    ready = ["exec", f"{pod}-postgres", "pg_isready", "--host=127.0.0.1", "--quiet"]
    while podman(*ready).returncode != 0:  # after the first start's initdb, it listens on TCP
        if time.monotonic() > deadline:
            sys.exit(f"error: database pod {pod} not ready after {timeout:.0f} s; see `podman logs`")
        time.sleep(0.5)


def play(image, name, port, database, postgres_image, timeout, rate_limits=None):
    if podman("image", "exists", image).returncode != 0:
        sys.exit(f"error: image {image} not found: run `make image` first")
    start_database(database, postgres_image, timeout)
    kube_play(local_deployment(image, name, port, rate_limits), name, network_name(database))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout)
    print(f"Digit recognizer (pod {name}-pod-0, image {image}, database {database}-postgres-pod-0): {url}")


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


def down_one(name: str) -> None:
    path = manifest_path(name)
    if path.exists():
        result = podman("kube", "down", str(path))
        if result.returncode != 0 and "no such pod" not in result.stderr:
            sys.exit(f"error: podman kube down failed:\n{result.stdout}{result.stderr}")
        for volume in empty_dirs(yaml.safe_load(path.read_text())):  # an emptyDir ends with its pod
            podman("volume", "rm", volume)
        path.unlink()
    elif podman("pod", "rm", "--force", f"{name}-pod-0").returncode != 0:
        print(f"no pod {name}-pod-0")
        return
    print(f"pod {name}-pod-0 removed")


def down(name: str) -> None:
    """The web pod and the database pod of this name; the database's volume stays."""
    down_one(name)
    if manifest_path(f"{name}-postgres").exists():
        down_one(f"{name}-postgres")
    # Refused while another web pod still uses it (--database); removed with the last one.
    podman("network", "rm", network_name(name))
    if podman("volume", "exists", volume_name(name)).returncode == 0:
        print(f"feedback kept in volume {volume_name(name)} (`podman volume rm` it to delete)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["play", "down"])
    parser.add_argument("--image", help="the image to run (play)")
    parser.add_argument("--name", default="digit-recognizer", help="Deployment name (pod: <name>-pod-0)")
    parser.add_argument("--port", type=int, default=5500, help="host port on 127.0.0.1 for the web app")
    parser.add_argument("--database", help="whose database the web pod uses (default: --name's own)")
    parser.add_argument("--postgres-image", help="the database's image (default: deploy/local's)")
    parser.add_argument("--rate-limits", help="the web app's WEB_RATE_LIMITS (default: the manifest's)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for /readyz")
    args = parser.parse_args()
    if args.action == "play":
        database = args.database or args.name
        play(args.image, args.name, args.port, database, args.postgres_image, args.timeout, args.rate_limits)
    else:
        down(args.name)


if __name__ == "__main__":
    main()
