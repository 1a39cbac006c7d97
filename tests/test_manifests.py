"""deploy/: every manifest validated against the Kubernetes API schemas (kubernetes-validate ships them,
no cluster and no network needed), and the properties the deployment relies on checked one by one."""

import copy

import kubernetes_validate
import pytest
import yaml

from scripts.local_pod import local_deployment
from tests.stack import ROOT
from web.registry import read_properties

DEPLOY = ROOT / "deploy"
LABELS = {"app.kubernetes.io/name": "digit-recognizer"}
# The newest schemas kubernetes-validate ships, and an older release still widely run.
KUBERNETES_VERSIONS = [kubernetes_validate.latest_version(), "1.30"]


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def by_kind(kind):
    return next(doc for doc in documents(DEPLOY / "kubernetes.yaml") if doc["kind"] == kind)


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
    assert overlay["resources"] == [".."]
    assert yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"] == ["kubernetes.yaml"]
    (patch_file,) = [p["path"] for p in overlay["patches"]]
    return strategic_merge(by_kind("Deployment"), yaml.safe_load((DEPLOY / "gpu" / patch_file).read_text()))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version):
    docs = documents(DEPLOY / "kubernetes.yaml")
    assert [d["kind"] for d in docs] == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    variants = [
        gpu_deployment(),
        local_deployment("localhost/digit-recognizer:1.0", "digit-recognizer", 5500),
    ]
    for doc in docs + variants:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_wrong_manifest():
    """The check above can fail: a misspelt field and a wrong type are both refused."""
    misspelt = copy.deepcopy(by_kind("Deployment"))
    containers(misspelt)["web"]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(by_kind("Service"))
    wrong_type["spec"]["ports"][0]["port"] = [80]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSIONS[0], strict=True)


def test_one_set_of_labels_ties_the_objects_together():
    deployment, service = by_kind("Deployment"), by_kind("Service")
    hpa, pdb = by_kind("HorizontalPodAutoscaler"), by_kind("PodDisruptionBudget")
    for doc in (deployment, service, hpa, pdb):
        assert doc["metadata"]["labels"] == LABELS
        assert doc["metadata"]["name"] == "digit-recognizer"
    assert deployment["spec"]["selector"]["matchLabels"] == LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"] == LABELS
    assert service["spec"]["selector"] == LABELS
    assert pdb["spec"]["selector"]["matchLabels"] == LABELS
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
    assert [p["targetPort"] for p in by_kind("Service")["spec"]["ports"]] == ["http"]
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
