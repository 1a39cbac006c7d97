"""deploy/: every manifest validated against the Kubernetes API schemas (kubernetes-validate ships them,
no cluster and no network needed), and the properties the deployment relies on checked one by one."""

import base64
import copy
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

import scripts.local_pod
from scripts.local_pod import local_database, local_deployment, local_image, secret_value
from tests.stack import ROOT
from web.feedback_store import MAX_OVERFLOW, POOL_SIZE, database_url, make_engine
from web.registry import read_properties

DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
LABELS = {"app.kubernetes.io/name": "digit-recognizer", "app.kubernetes.io/part-of": "digit-recognizer"}
SELECTOR = {"app.kubernetes.io/name": "digit-recognizer"}
DATABASE = {"app.kubernetes.io/name": "postgres"}
BACKUP = {"app.kubernetes.io/name": "postgres-backup"}
# The newest schemas kubernetes-validate ships, and an older release still widely run.
KUBERNETES_VERSIONS = [kubernetes_validate.latest_version(), "1.30"]


@pytest.fixture(autouse=True)
def local_secrets(tmp_path, monkeypatch):
    """scripts/local_pod.py's Secrets made here, never from or into the checkout: deploy/base/ without
    secrets/ (a copy of its files), and the values it makes for want of them in tmp_path/local."""
    base = tmp_path / "base"
    shutil.copytree(BASE, base, ignore=shutil.ignore_patterns("secrets"))
    monkeypatch.setattr(scripts.local_pod, "BASE", base)
    monkeypatch.setattr(scripts.local_pod, "LOCAL_SECRETS", tmp_path / "local")
    return base


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def base_documents():
    """deploy/base/ as `kubectl apply -k deploy/base` sends it: its kustomization's files, in order."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents(BASE / name)]


def by_kind(kind, name=None):
    return next(
        doc for doc in base_documents() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    )


def containers(deployment):
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def strategic_merge(base, patch):
    """kustomize's strategic merge, as far as deploy/gpu uses it: maps merge, lists of named items merge
    by name, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {k: strategic_merge(base[k], v) if k in base else v for k, v in patch.items()} | {
            k: v for k, v in base.items() if k not in patch
        }
    if isinstance(base, list) and isinstance(patch, list) and all("name" in i for i in base + patch):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = strategic_merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return patch


def gpu_deployment():
    overlay = yaml.safe_load((DEPLOY / "gpu" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../base"]
    (patch_file,) = [p["path"] for p in overlay["patches"]]
    return strategic_merge(by_kind("Deployment"), yaml.safe_load((DEPLOY / "gpu" / patch_file).read_text()))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version):
    docs = base_documents()
    assert sorted(d["kind"] for d in docs) == sorted(
        ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
        + ["Service", "StatefulSet", "PersistentVolumeClaim", "CronJob"]
        + ["NetworkPolicy"] * 2
    )
    # Every file of deploy/base/ is in its kustomization: none is left out of `kubectl apply -k`.
    assert {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"} == set(
        yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    )
    variants = [
        gpu_deployment(),
        local_deployment("localhost/digit-recognizer:1.0", "digit-recognizer", 5500),
        local_database("digit-recognizer"),
    ]
    for doc in docs + variants:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_wrong_manifest():
    """The check above can fail: a misspelt field and a wrong type are both refused."""
    misspelt = copy.deepcopy(by_kind("Deployment"))
    containers(misspelt)["web"]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(by_kind("Service", "digit-recognizer"))
    wrong_type["spec"]["ports"][0]["port"] = [80]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSIONS[0], strict=True)


def test_one_set_of_labels_ties_the_objects_together():
    deployment, service = by_kind("Deployment"), by_kind("Service", "digit-recognizer")
    hpa, pdb = by_kind("HorizontalPodAutoscaler"), by_kind("PodDisruptionBudget")
    for doc in (deployment, service, hpa, pdb):
        assert doc["metadata"]["labels"] == LABELS
        assert doc["metadata"]["name"] == "digit-recognizer"
    # Every object is part of the one application, named by what it is.
    for doc in base_documents():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "digit-recognizer", doc["metadata"]["name"]
        assert set(labels) == {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
    assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
    assert deployment["spec"]["template"]["metadata"]["labels"] == LABELS
    assert service["spec"]["selector"] == SELECTOR
    assert pdb["spec"]["selector"]["matchLabels"] == SELECTOR
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "digit-recognizer",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # Never fewer than the PDB lets stay up while one pod is drained.
    assert hpa["spec"]["minReplicas"] - pdb["spec"]["maxUnavailable"] >= 1


def test_only_the_web_port_leaves_the_pod():
    pod = containers(by_kind("Deployment"))
    assert set(pod) == {"torchserve", "web"}
    assert "ports" not in pod["torchserve"]
    assert pod["web"]["ports"] == [{"name": "http", "containerPort": 5500}]
    assert [p["targetPort"] for p in by_kind("Service", "digit-recognizer")["spec"]["ports"]] == ["http"]
    # TorchServe binds the loopback: inside the pod's network namespace, that is the pod itself.
    properties = read_properties(ROOT / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert properties[key].startswith("http://127.0.0.1:")
    assert properties["grpc_inference_address"] == properties["grpc_management_address"] == "127.0.0.1"


def test_the_containers_share_the_run_directory_and_are_locked_down():
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert {"name": "run", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    for name, container in containers(deployment).items():
        assert container["args"] == [name]  # the image's entrypoint picks the role
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "run", "mountPath": "/app/run"} | ({"readOnly": True} if name == "web" else {}) in (
            container["volumeMounts"]
        )
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_probes_ask_the_web_app():
    web = containers(by_kind("Deployment"))["web"]
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_gpu_variant_puts_torchserve_on_one_gpu():
    base, gpu = by_kind("Deployment"), gpu_deployment()
    torchserve = containers(gpu)["torchserve"]
    assert torchserve["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "TS_NUMBER_OF_GPU", "value": "1"} in torchserve["env"]
    assert {"name": "TS_NUMBER_OF_GPU", "value": "0"} in containers(base)["torchserve"]["env"]
    assert gpu["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # Everything else is the CPU Deployment's: the web container, the volumes, the security settings.
    assert containers(gpu)["web"] == containers(base)["web"]
    assert gpu["spec"]["template"]["spec"]["volumes"] == base["spec"]["template"]["spec"]["volumes"]
    assert torchserve["securityContext"] == containers(base)["torchserve"]["securityContext"]


def test_the_local_variant_publishes_the_web_port_on_loopback_only():
    local = local_deployment("localhost/digit-recognizer:test", "digit-recognizer-test", 5599)
    pod = containers(local)
    assert local["metadata"]["name"] == "digit-recognizer-test" and local["spec"]["replicas"] == 1
    assert pod["web"]["ports"] == [
        {"name": "http", "containerPort": 5500, "hostPort": 5599, "hostIP": "127.0.0.1"}
    ]
    assert "ports" not in pod["torchserve"]
    assert {c["image"] for c in pod.values()} == {"localhost/digit-recognizer:test"}
    # The rest is the cluster's pod: same volumes, resources and security settings.
    base = containers(by_kind("Deployment"))
    for name in pod:
        assert pod[name]["resources"] == base[name]["resources"]
        assert pod[name]["securityContext"] == base[name]["securityContext"]


def env_of(container):
    return {var["name"]: var for var in container.get("env", [])}


def test_the_web_pods_feedback_db_is_the_one_database_with_the_secrets_password():
    web = containers(by_kind("Deployment"))["web"]
    env = env_of(web)
    names = [var["name"] for var in web["env"]]
    # $(POSTGRES_PASSWORD) is expanded only from a variable defined before it.
    assert names.index("POSTGRES_PASSWORD") < names.index("FEEDBACK_DB")
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "postgres-credentials", "key": "password"}
    }
    assert env["FEEDBACK_TICKET_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "web-secrets", "key": "ticket-key"}
    }
    # The URL names the StatefulSet's user and database, and the database Service's name and port.
    server = env_of(containers(by_kind("StatefulSet"))["postgres"])
    assert server["POSTGRES_PASSWORD"]["valueFrom"] == env["POSTGRES_PASSWORD"]["valueFrom"]
    user, db = server["POSTGRES_USER"]["value"], server["POSTGRES_DB"]["value"]
    service = by_kind("Service", "postgres")
    (port,) = service["spec"]["ports"]
    host = f"{service['metadata']['name']}:{port['port']}"
    assert env["FEEDBACK_DB"]["value"] == f"postgresql://{user}:$(POSTGRES_PASSWORD)@{host}/{db}"
    # The web app takes it as PostgreSQL through asyncpg (web/feedback_store.py), password and all.
    url = database_url(env["FEEDBACK_DB"]["value"].replace("$(POSTGRES_PASSWORD)", "0123abcd"))
    assert url == f"postgresql+asyncpg://{user}:0123abcd@{host}/{db}"
    # Nothing of the pod holds feedback any more.
    assert "feedback" not in {v["name"] for v in by_kind("Deployment")["spec"]["template"]["spec"]["volumes"]}


KUSTOMIZATION = yaml.safe_load((BASE / "kustomization.yaml").read_text())


def secret_refs() -> set[tuple[str, str]]:
    """(Secret, key) of every secretKeyRef in deploy/base/."""
    text = "\n".join((BASE / name).read_text() for name in KUSTOMIZATION["resources"])
    return set(re.findall(r"secretKeyRef:\s+name: (\S+)\s+key: (\S+)", text))


def test_the_secrets_are_made_from_git_ignored_files_never_shipped():
    """No Secret in the manifests (a placeholder would overwrite the real one at every `kubectl apply -k`):
    the kustomization generates each from an env file under deploy/base/secrets/, which git ignores, and
    docs/deployment.md says how to make each key every secretKeyRef reads."""
    assert all(doc["kind"] != "Secret" for doc in base_documents())
    generators = {g["name"]: g for g in KUSTOMIZATION["secretGenerator"]}
    assert set(generators) == {name for name, _ in secret_refs()} == {"postgres-credentials", "web-secrets"}
    # Names as the secretKeyRefs give them: no hash suffix.
    assert KUSTOMIZATION["generatorOptions"] == {"disableNameSuffixHash": True}
    guide = (ROOT / "docs" / "deployment.md").read_text()
    for name, generator in generators.items():
        (env_file,) = generator["envs"]
        assert env_file.startswith("secrets/") and env_file.endswith(".env")
        ignored = subprocess.run(["git", "check-ignore", "-q", f"deploy/base/{env_file}"], cwd=ROOT)
        assert ignored.returncode == 0, f"deploy/base/{env_file} is not git-ignored"
        labels = generator["options"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "digit-recognizer" and set(labels) == set(LABELS)
        for key in sorted(k for n, k in secret_refs() if n == name):
            assert f'"{key}=$(openssl rand -hex' in guide and f"> deploy/base/{env_file}" in guide, key
    assert not list(ROOT.glob("deploy/**/secrets.yaml"))


def test_kustomize_refuses_to_build_without_the_secrets_and_makes_them_from_the_files(tmp_path):
    """The real kustomize (kubectl's): with no secret files the build stops; with them, two Secrets of
    the names and labels the manifests expect, their values the files' exactly (no newline), and the
    rest of the build deploy/base/'s documents unchanged. Missing kubectl is a failure, not a skip: CI
    installs it (.ci/run)."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl not found: install it (sudo apt-get install -y kubectl, or kubernetes-client)")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy, ignore=shutil.ignore_patterns("secrets"))
    build = ["kubectl", "kustomize", str(deploy / "base")]
    refused = subprocess.run(build, capture_output=True, text=True)
    assert refused.returncode != 0 and "secrets/postgres.env" in refused.stderr
    (deploy / "base" / "secrets").mkdir()
    values = {"password": "0123abcd" * 6, "ticket-key": "fedc9876" * 8}
    (deploy / "base" / "secrets" / "postgres.env").write_text(f"password={values['password']}\n")
    (deploy / "base" / "secrets" / "web.env").write_text(f"ticket-key={values['ticket-key']}\n")
    built = list(yaml.safe_load_all(subprocess.run(build, capture_output=True, text=True, check=True).stdout))
    made = {doc["metadata"]["name"]: doc for doc in built if doc["kind"] == "Secret"}
    assert set(made) == {name for name, _ in secret_refs()}
    for name, key in secret_refs():
        assert base64.b64decode(made[name]["data"][key]).decode() == values[key]
    assert made["web-secrets"]["metadata"]["labels"] == LABELS
    assert made["postgres-credentials"]["metadata"]["labels"]["app.kubernetes.io/name"] == "postgres"
    for doc in made.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)
    rest = sorted(
        (doc for doc in built if doc["kind"] != "Secret"), key=lambda d: (d["kind"], d["metadata"]["name"])
    )
    assert rest == sorted(base_documents(), key=lambda d: (d["kind"], d["metadata"]["name"]))


def test_local_plays_take_the_secret_files_when_there_are_any_else_values_made_once(local_secrets):
    """scripts/local_pod.py (podman 4.3 reads no Secret): the cluster's env files when present; else random
    values made once and kept, so a rollout's web pod gets the password the database was made with."""
    made = {ref: secret_value(*ref) for ref in sorted(secret_refs())}
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in made.values())  # fit for a URL as it is
    assert len(set(made.values())) == len(made)
    assert {ref: secret_value(*ref) for ref in made} == made  # the same at the next play
    assert (scripts.local_pod.LOCAL_SECRETS.stat().st_mode & 0o777) == 0o700
    (local_secrets / "secrets").mkdir()
    (local_secrets / "secrets" / "postgres.env").write_text("# the cluster's\npassword=fromthefile0123\n")
    assert secret_value("postgres-credentials", "password") == "fromthefile0123"
    assert secret_value("web-secrets", "ticket-key") == made[("web-secrets", "ticket-key")]


POSTGRES_MAX_CONNECTIONS = 100  # PostgreSQL's default, unless the server's args set max_connections
SUPERUSER_RESERVED = 3  # superuser_reserved_connections' default: not for the web pods
HEADROOM = 10  # connections left for psql sessions, a pod still terminating, restores


def test_the_web_pods_connections_fit_the_database_at_the_autoscalers_maximum():
    """docs/database.md, "Connections": every web pod the HPA may run, plus the one a rollout adds, each with
    its whole pool (web/feedback_store.py), and the backup's pg_dump fit max_connections with room left."""
    pods = by_kind("HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    pods += by_kind("Deployment")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    server = containers(by_kind("StatefulSet"))["postgres"]
    setting = re.search(
        r"max_connections=(\d+)", " ".join(server.get("command", []) + server.get("args", []))
    )
    max_connections = int(setting[1]) if setting else POSTGRES_MAX_CONNECTIONS
    assert by_kind("CronJob")["spec"]["concurrencyPolicy"] == "Forbid"  # one backup, one connection
    web = pods * (POOL_SIZE + MAX_OVERFLOW)
    assert web + 1 + SUPERUSER_RESERVED + HEADROOM <= max_connections, (web, max_connections)
    # The engine the web app makes is so sized.
    pool = make_engine(database_url("postgresql://feedback:x@postgres:5432/feedback")).sync_engine.pool
    assert (pool.size(), pool._max_overflow) == (POOL_SIZE, MAX_OVERFLOW)
    # docs/database.md's arithmetic is this one.
    doc = (ROOT / "docs" / "database.md").read_text()
    assert f"({pods} pods x {POOL_SIZE + MAX_OVERFLOW} = {web})" in doc


def test_the_database_keeps_its_data_on_a_claim_and_is_found_through_a_headless_service():
    statefulset, service = by_kind("StatefulSet"), by_kind("Service", "postgres")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"] == "postgres"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"] == DATABASE
    assert statefulset["spec"]["replicas"] == 1
    pod = statefulset["spec"]["template"]["spec"]
    postgres = containers(statefulset)["postgres"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in postgres["volumeMounts"]}
    pgdata = env_of(postgres)["PGDATA"]["value"]
    # PGDATA below the claim's mount point (not the mount point itself: lost+found).
    assert pgdata.startswith(mounts[claim["metadata"]["name"]] + "/")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert postgres["ports"] == [{"name": "postgres", "containerPort": 5432}]
    assert service["spec"]["ports"][0]["targetPort"] == "postgres"
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 999
    assert postgres["securityContext"]["readOnlyRootFilesystem"] is True
    assert postgres["image"] == "postgres:15"  # the official image; deploy/local substitutes


def pod_labels(kind):
    doc = by_kind(kind)
    template = (
        doc["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else doc["spec"]["template"]
    )
    return template["metadata"]["labels"]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_network_policies_let_only_web_pods_reach_the_database_and_only_the_web_port_reach_them():
    database, web = by_kind("NetworkPolicy", "postgres"), by_kind("NetworkPolicy", "digit-recognizer")
    web_pods, db_pods, backup_pods = (
        pod_labels("Deployment"),
        pod_labels("StatefulSet"),
        pod_labels("CronJob"),
    )
    assert selects(database["spec"]["podSelector"], db_pods)
    assert not selects(database["spec"]["podSelector"], web_pods)
    (rule,) = database["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    sources = [peer["podSelector"] for peer in rule["from"]]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # no namespace or IP block
    assert any(selects(s, web_pods) for s in sources) and any(selects(s, backup_pods) for s in sources)
    assert not any(selects(s, db_pods) for s in sources)
    assert selects(web["spec"]["podSelector"], web_pods) and not selects(web["spec"]["podSelector"], db_pods)
    (rule,) = web["spec"]["ingress"]
    assert "from" not in rule  # the Service and the kubelet's probes come from anywhere
    (web_port,) = containers(by_kind("Deployment"))["web"]["ports"]
    assert rule["ports"] == [{"protocol": "TCP", "port": web_port["containerPort"]}]
    for policy in (database, web):
        assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_the_backup_dumps_the_database_with_its_own_credentials_onto_its_own_claim():
    cronjob = by_kind("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (dump,) = pod["containers"]
    env = env_of(dump)
    assert env["PGHOST"]["value"] == by_kind("Service", "postgres")["metadata"]["name"]
    server = env_of(containers(by_kind("StatefulSet"))["postgres"])
    assert env["PGUSER"]["value"] == server["POSTGRES_USER"]["value"]
    assert env["PGDATABASE"]["value"] == server["POSTGRES_DB"]["value"]
    assert env["PGPASSWORD"]["valueFrom"] == server["POSTGRES_PASSWORD"]["valueFrom"]
    assert dump["image"] == containers(by_kind("StatefulSet"))["postgres"]["image"]  # same pg_dump version
    assert "pg_dump --format=custom" in dump["args"][0]
    (volume,) = pod["volumes"]
    assert (
        volume["persistentVolumeClaim"]["claimName"] == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    )


def test_the_local_variants_substitute_the_image_fill_in_secrets_and_keep_the_rest():
    overlay = yaml.safe_load((DEPLOY / "local" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../base"]
    (rule,) = overlay["images"]
    makefile = (ROOT / "Makefile").read_text()
    default = re.search(r"^POSTGRES_IMAGE \?= (\S+)$", makefile, re.M)[1]
    assert local_image("postgres:15") == default == f"{rule['newName']}:{rule['newTag']}"
    assert local_image("digit-recognizer:1.0") == "digit-recognizer:1.0"

    database = local_database("dr-test")
    statefulset = by_kind("StatefulSet")
    assert (
        database["metadata"]["name"] == "dr-test-postgres"
    )  # its container: dr-test-postgres-pod-0-postgres
    (postgres,) = database["spec"]["template"]["spec"]["containers"]
    assert postgres["name"] == "postgres" and postgres["image"] == default
    assert local_database("dr-test", "localhost/other:15")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == ("localhost/other:15")
    volumes = {v["name"]: v for v in database["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "dr-test-postgres-data"},
    }
    # podman plays an emptyDir as a volume of that name: each is the Deployment's own, never shared.
    assert {n for n, v in volumes.items() if "emptyDir" in v} == {
        "dr-test-postgres-socket",
        "dr-test-postgres-tmp",
    }
    web_volumes = local_deployment("x", "dr-web", 5599)["spec"]["template"]["spec"]["volumes"]
    assert {v["name"] for v in web_volumes} == {"dr-web-run", "dr-web-tmp"}
    password = secret_value("postgres-credentials", "password")
    assert {"name": "POSTGRES_PASSWORD", "value": password} in postgres["env"]
    assert "ports" not in postgres  # podman would publish a containerPort on every host address
    assert postgres["securityContext"] == containers(statefulset)["postgres"]["securityContext"]

    web = containers(local_deployment("x", "x", 5599))["web"]
    env = {var["name"]: var["value"] for var in web["env"]}  # every value filled in, none from a Secret
    assert env["FEEDBACK_DB"] == f"postgresql://feedback:{password}@postgres:5432/feedback"
    assert env["FEEDBACK_TICKET_KEY"] == secret_value("web-secrets", "ticket-key")
