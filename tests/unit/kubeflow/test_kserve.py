"""The KServe InferenceService (alpr.kubeflow.kserve): settings, the target decision, the body, the storage URI the
cluster reads, what a patch changes.

Creating and patching it against an in-memory Kubernetes API (kmock) is tested through the Deploy step, in
tests/unit/steps/test_deploy.py; the body against KServe's own CRD schema in tests/cluster/test_crds.py."""

import pytest
import yaml

from alpr.defaults import DEPLOY_DEFAULTS
from alpr.kubeflow.kserve import (
    ANNOTATION_PREFIX,
    DEPLOY_TARGETS,
    LOGGER_MODES,
    MODEL_FORMAT,
    RUNTIME_NAME,
    DeployError,
    DeploySettings,
    build_inference_service,
    describe_error,
    format_eir,
    logger_spec,
    model_patch,
    resolve_target,
    storage_uri,
)
from alpr.kubeflow.platform import PlatformSettings

NS = "alpr-test"
ANN = ANNOTATION_PREFIX


@pytest.fixture
def outside_cluster(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("ALPR_DEPLOY_TARGET", raising=False)


def test_settings_are_validated(monkeypatch, outside_cluster):
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "kubernetes")
    monkeypatch.setenv("ALPR_ISVC_NAMESPACE", "team-a")
    monkeypatch.setenv("ALPR_SERVING_RUNTIME", "alpr-gpu")
    s = DeploySettings()
    assert (s.deploy_target, s.target(), s.target_name(), s.serving_runtime) == (
        "kubernetes",
        "kubernetes",
        "team-a/alpr",
        "alpr-gpu",
    )
    assert DeploySettings(deploy_target="local").target_name() == "local"
    assert DeploySettings(deploy_target="").deploy_target == "auto"  # runs submitted before `auto` existed
    # the workspace PVC the pipeline's pods mount is where local model paths live (one source: PlatformSettings)
    platform = PlatformSettings()
    assert (s.model_pvc, s.model_pvc_mount) == (platform.pvc, platform.pvc_mount)
    with pytest.raises(ValueError, match="ALPR_ISVC_NAME"):
        DeploySettings(isvc_name="Bad_Name")
    with pytest.raises(ValueError, match="ALPR_SERVING_RUNTIME"):
        DeploySettings(serving_runtime="-x")
    with pytest.raises(ValueError, match="ALPR_MODEL_PVC_MOUNT"):
        DeploySettings(model_pvc_mount="mnt/alpr")
    with pytest.raises(ValueError, match="ALPR_MODEL_PVC"):
        DeploySettings(model_pvc="Bad_Claim")
    with pytest.raises(ValueError, match="MIN_REPLICAS"):
        DeploySettings(serving_min_replicas=3, serving_max_replicas=2)
    with pytest.raises(ValueError):
        DeploySettings(deploy_target="cloud")


# --- where Deploy deploys ------------------------------------------------------------------------------------------


def test_the_target_vocabulary_is_one_and_auto_is_the_default():
    assert DEPLOY_TARGETS == ("auto", "local", "kubernetes")
    assert DEPLOY_DEFAULTS["deploy_target"] in DEPLOY_TARGETS and DEPLOY_DEFAULTS["deploy_target"] == "auto"


def test_auto_is_kubernetes_in_a_pod_and_local_elsewhere_unless_the_environment_says(monkeypatch, outside_cluster):
    assert resolve_target("auto") == resolve_target("") == "local"
    assert DeploySettings().target() == "local"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # what the kubelet sets in every pod
    assert resolve_target("auto") == resolve_target("") == "kubernetes"
    assert DeploySettings().target() == "kubernetes"
    assert resolve_target("local") == "local"  # an explicit parameter wins
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "local")  # an operator's explicit choice (ConfigMap) wins over auto
    assert resolve_target("auto") == "local" and resolve_target("kubernetes") == "kubernetes"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "kubernetes")
    assert resolve_target("auto") == "kubernetes"
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "auto")
    assert resolve_target("") == "local"
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "cloud")
    with pytest.raises(ValueError, match="ALPR_DEPLOY_TARGET must be one of auto, local, kubernetes, got 'cloud'"):
        resolve_target("auto")
    with pytest.raises(ValueError, match="deploy target must be one of auto, local, kubernetes, got 'Local'"):
        resolve_target("Local")


# --- the storage URI the cluster reads -----------------------------------------------------------------------------


def test_storage_uri_maps_the_workspace_pvc_and_refuses_what_the_cluster_cannot_read():
    ds = DeploySettings(model_pvc="alpr-workspace", model_pvc_mount="/mnt/alpr")
    for remote in ("gs://b/alpr/runs/r/model", "s3://b/m", "pvc://other/models/m", "https://h/m.tar.gz", "hf://o/m"):
        assert storage_uri(remote, ds) == remote
    assert storage_uri("/mnt/alpr/storage/runs/r/model", ds) == "pvc://alpr-workspace/storage/runs/r/model"
    assert storage_uri("file:///mnt/alpr/storage/m", ds) == "pvc://alpr-workspace/storage/m"
    assert storage_uri("/mnt/alpr", ds) == "pvc://alpr-workspace"
    for unreadable in ("/srv/models/m", "relative/mnt/alpr/m", "/mnt/alpr/../etc/m", "/mnt/alprx/m", ""):
        with pytest.raises(DeployError, match="cannot read model"):
            storage_uri(unreadable, ds)
    with pytest.raises(DeployError, match="ALPR_MODEL_PVC is empty"):
        storage_uri("/mnt/alpr/storage/m", DeploySettings(model_pvc=""))
    with pytest.raises(DeployError, match="reads no ftp:// URIs"):
        storage_uri("ftp://h/m", ds)


# --- the InferenceService body -----------------------------------------------------------------------------------


def test_inference_service_body():
    ds = DeploySettings(
        deploy_target="kubernetes",
        isvc_namespace=NS,
        serving_min_replicas=1,
        serving_max_replicas=3,
        serving_service_account="alpr-serving",
    )
    body = build_inference_service(ds, model_uri="gs://b/runs/r/model", model_id=12, eir=0.8125, run="r")
    assert body["apiVersion"] == "serving.kserve.io/v1beta1" and body["kind"] == "InferenceService"
    assert body["metadata"]["name"] == "alpr" and body["metadata"]["namespace"] == NS
    assert body["metadata"]["annotations"] == {
        f"{ANN}/model-id": "12",
        f"{ANN}/model-uri": "gs://b/runs/r/model",
        f"{ANN}/eir": "0.8125",
        f"{ANN}/eir-split": "test",
        f"{ANN}/run": "r",
        "serving.kserve.io/deploymentMode": "RawDeployment",
    }
    predictor = body["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["serviceAccountName"]) == (
        1,
        3,
        "alpr-serving",
    )
    # the KServe way: the runtime's container, the model named by one storage URI
    assert predictor["model"] == {
        "modelFormat": {"name": "alpr", "version": "1"},
        "runtime": RUNTIME_NAME,
        "storageUri": "gs://b/runs/r/model",
    }
    assert "containers" not in predictor and "volumes" not in predictor
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert "logger" not in predictor  # no ALPR_MONITOR_URL: no payload logger


def test_inference_service_logs_to_the_monitor_when_its_url_is_set(monkeypatch, outside_cluster):
    """KServe's payload logger (spec.predictor.logger) sends every request and response to the monitor's /events,
    with the binary data extension's header length as metadata; patches of an existing service leave it alone."""
    url = f"http://alpr-monitor.{NS}.svc.cluster.local/events"
    monkeypatch.setenv("ALPR_MONITOR_URL", url)
    ds = DeploySettings(isvc_namespace=NS)
    assert (ds.monitor_url, ds.monitor_log_mode) == (url, "all")
    body = build_inference_service(ds, model_uri="gs://b/m", model_id=1, eir=None)
    assert body["spec"]["predictor"]["logger"] == {
        "mode": "all",
        "url": url,
        "metadataHeaders": ["Inference-Header-Content-Length"],
    }
    assert logger_spec(DeploySettings(monitor_url=url, monitor_log_mode="response"))["mode"] == "response"
    assert LOGGER_MODES == ("all", "request", "response")
    # the merge patch of an existing InferenceService changes the model only, never its logger
    patch = model_patch(body, body)
    assert "logger" not in patch["spec"]["predictor"]
    monkeypatch.setenv("ALPR_MONITOR_URL", "  ")
    assert logger_spec(DeploySettings()) is None
    for bad in ("alpr-monitor/events", "ftp://h/events", "http:///events"):
        with pytest.raises(ValueError, match="ALPR_MONITOR_URL"):
            DeploySettings(monitor_url=bad)
    with pytest.raises(ValueError):
        DeploySettings(monitor_url=url, monitor_log_mode="everything")
    with_pvc = build_inference_service(
        DeploySettings(serving_deployment_mode=""), model_uri="/mnt/alpr/storage/runs/r/model", model_id=1, eir=None
    )
    assert "serving.kserve.io/deploymentMode" not in with_pvc["metadata"]["annotations"]
    assert with_pvc["metadata"]["annotations"][f"{ANN}/model-uri"] == "/mnt/alpr/storage/runs/r/model"
    assert with_pvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://alpr-workspace/storage/runs/r/model"
    with pytest.raises(DeployError, match="cannot read model '/elsewhere/model'"):
        build_inference_service(ds, model_uri="/elsewhere/model", model_id=1, eir=None)
    # nothing secret-looking in it
    text = yaml.safe_dump(body)
    assert "password" not in text.lower() and "token" not in text.lower() and "latest" not in text
    assert (
        "serviceAccountName"
        not in build_inference_service(
            DeploySettings(serving_service_account=""), model_uri="gs://b/m", model_id=1, eir=None
        )["spec"]["predictor"]
    )


def test_model_patch_changes_only_the_storage_uri_and_the_annotations():
    ds = DeploySettings(isvc_namespace=NS)
    body = build_inference_service(ds, model_uri="gs://b/new", model_id=2, eir=0.9, run="r2")
    existing = {
        "metadata": {
            "name": "alpr",
            "namespace": NS,
            "resourceVersion": "41",
            "annotations": {"owner": "helm", f"{ANN}/model-id": "1"},
        },
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "model": {
                    "modelFormat": {"name": "alpr", "version": "1"},
                    "runtime": "alpr",
                    "storageUri": "gs://b/old",
                    "resources": {"limits": {"cpu": "4"}},
                },
            }
        },
    }
    patch = model_patch(existing, body)
    assert patch == {
        "metadata": {
            "resourceVersion": "41",  # the API server refuses it if the object changed
            "annotations": {k: v for k, v in body["metadata"]["annotations"].items() if k.startswith(f"{ANN}/")},
        },
        "spec": {"predictor": {"model": {"storageUri": "gs://b/new"}}},  # a merge patch: the rest stays
    }
    assert "serving.kserve.io/deploymentMode" not in patch["metadata"]["annotations"]
    no_model_yet = copy_without_storage_uri(existing)  # the manifests' InferenceService before the first Deploy
    assert model_patch(no_model_yet, body)["spec"]["predictor"]["model"] == {"storageUri": "gs://b/new"}
    assert "resourceVersion" not in model_patch({**existing, "metadata": {"name": "alpr"}}, body)["metadata"]
    foreign = {
        "metadata": {"name": "alpr", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://x"}}},
    }
    with pytest.raises(DeployError, match="does not serve a model of format 'alpr'.*'sklearn'"):
        model_patch(foreign, body)
    old_custom_container = {  # what earlier versions of this project made: delete it, re-apply the manifests
        "metadata": {"name": "alpr", "namespace": NS},
        "spec": {"predictor": {"containers": [{"name": "kserve-container", "args": ["--model", "latest"]}]}},
    }
    with pytest.raises(DeployError, match="does not serve a model of format 'alpr'"):
        model_patch(old_custom_container, body)
    assert MODEL_FORMAT == {"name": "alpr", "version": "1"}


def copy_without_storage_uri(isvc: dict) -> dict:
    model = {k: v for k, v in isvc["spec"]["predictor"]["model"].items() if k != "storageUri"}
    return {**isvc, "spec": {"predictor": {**isvc["spec"]["predictor"], "model": model}}}


def test_format_eir_and_describe_error():
    assert (format_eir(0.81254), format_eir(None), format_eir(1.0)) == ("0.8125", "n/a", "1.0000")

    class ApiError(Exception):
        status, reason = 403, "Forbidden"
        body = '{"message": "no RBAC"}'

    assert describe_error(ApiError()) == "Kubernetes API answered HTTP 403 Forbidden: no RBAC"
    ApiError.body = "<html>gateway</html>"
    assert describe_error(ApiError()) == "Kubernetes API answered HTTP 403 Forbidden: <html>gateway</html>"
    assert describe_error(ConnectionError("refused")) == "ConnectionError: refused"
