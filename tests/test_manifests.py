"""deploy/: every manifest validated against the Kubernetes API schemas (kubernetes-validate ships them,
no cluster and no network needed), and the properties the deployment relies on checked one by one."""

import copy
import re

import kubernetes_validate
import pytest
import yaml

from scripts.local_pod import local_database, local_deployment, local_image
from tests.stack import ROOT
from web.feedback_store import database_url
from web.registry import read_properties

DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
LABELS = {"app.kubernetes.io/name": "digit-recognizer", "app.kubernetes.io/part-of": "digit-recognizer"}
SELECTOR = {"app.kubernetes.io/name": "digit-recognizer"}
DATABASE = {"app.kubernetes.io/name": "postgres"}
BACKUP = {"app.kubernetes.io/name": "postgres-backup"}
# The newest schemas kubernetes-validate ships, and an older release still widely run.
KUBERNETES_VERSIONS = [kubernetes_validate.latest_version(), "1.30"]


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
        + ["Secret"] * 2
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


def test_the_secrets_are_placeholders_said_to_be_replaced():
    text = (BASE / "secrets.yaml").read_text()
    secrets = {doc["metadata"]["name"]: doc for doc in documents(BASE / "secrets.yaml")}
    assert set(secrets) == {"postgres-credentials", "web-secrets"}
    values = [v for doc in secrets.values() for v in doc["stringData"].values()]
    assert values and all(v.startswith("replace-me") for v in values)
    assert text.count("# PLACEHOLDER, replace it") == len(values)  # a comment at each value
    # The password goes into a URL as it is: the placeholder shows what is safe there.
    assert re.fullmatch(r"[a-z0-9-]+", secrets["postgres-credentials"]["stringData"]["password"])


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
    password = documents(BASE / "secrets.yaml")[0]["stringData"]["password"]
    assert {"name": "POSTGRES_PASSWORD", "value": password} in postgres["env"]
    assert "ports" not in postgres  # podman would publish a containerPort on every host address
    assert postgres["securityContext"] == containers(statefulset)["postgres"]["securityContext"]

    web = containers(local_deployment("x", "x", 5599))["web"]
    env = {var["name"]: var["value"] for var in web["env"]}  # every value filled in, none from a Secret
    assert env["FEEDBACK_DB"] == f"postgresql://feedback:{password}@postgres:5432/feedback"
    assert env["FEEDBACK_TICKET_KEY"] == documents(BASE / "secrets.yaml")[1]["stringData"]["ticket-key"]
