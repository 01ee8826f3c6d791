"""The KServe InferenceService (alpr.kubeflow.kserve): settings, the body, what a patch changes, readable URIs.

Creating and patching it against an in-memory Kubernetes API (kmock) is tested through the Deploy step, in
tests/unit/steps/test_deploy.py."""

import pytest
import yaml

from alpr.kubeflow.kserve import (
    ANNOTATION_PREFIX,
    CONTAINER_NAME,
    DeployError,
    DeploySettings,
    build_inference_service,
    describe_error,
    format_eir,
    model_patch,
    readable_by_predictor,
)

NS = "alpr-test"
IMAGE = "registry.example/alpr-serving:test"
ANN = ANNOTATION_PREFIX


def test_settings_are_validated(monkeypatch):
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "kubernetes")
    monkeypatch.setenv("ALPR_ISVC_NAMESPACE", "team-a")
    monkeypatch.setenv("ALPR_SERVING_IMAGE", IMAGE)
    s = DeploySettings()
    assert (s.deploy_target, s.target_name(), s.serving_image) == ("kubernetes", "team-a/alpr", IMAGE)
    assert DeploySettings(deploy_target="local").target_name() == "local"
    with pytest.raises(ValueError, match="ALPR_ISVC_NAME"):
        DeploySettings(isvc_name="Bad_Name")
    with pytest.raises(ValueError, match="MIN_REPLICAS"):
        DeploySettings(serving_min_replicas=3, serving_max_replicas=2)
    with pytest.raises(ValueError):
        DeploySettings(deploy_target="cloud")


# --- the InferenceService body -----------------------------------------------------------------------------------


def test_inference_service_body():
    ds = DeploySettings(
        deploy_target="kubernetes",
        isvc_namespace=NS,
        serving_image=IMAGE,
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
    (container,) = predictor["containers"]
    assert container["name"] == CONTAINER_NAME and container["image"] == IMAGE
    assert container["args"] == ["--model", "gs://b/runs/r/model", "--http-port", "8080"]
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/models/alpr/ready", "port": 8080}
    assert set(container["resources"]) == {"requests", "limits"}
    assert "volumes" not in predictor and "volumeMounts" not in container
    with_pvc = build_inference_service(
        DeploySettings(serving_pvc="alpr-workspace", serving_deployment_mode=""),
        model_uri="/mnt/alpr/storage/runs/r/model",
        model_id=1,
        eir=None,
    )
    assert "serving.kserve.io/deploymentMode" not in with_pvc["metadata"]["annotations"]
    assert with_pvc["spec"]["predictor"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "alpr-workspace"
    assert readable_by_predictor("/mnt/alpr/storage/runs/r/model", with_pvc)
    assert not readable_by_predictor("/elsewhere/model", with_pvc)
    assert not readable_by_predictor("/mnt/alpr/storage/runs/r/model", body)
    assert readable_by_predictor("gs://b/runs/r/model", body)
    # the pod fields are valid Kubernetes (the schemas kubernetes-validate ships)
    import kubernetes_validate

    for spec in (predictor, with_pvc["spec"]["predictor"]):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {k: v for k, v in spec.items() if k not in ("minReplicas", "maxReplicas")},
        }
        kubernetes_validate.validate(pod, "1.30", strict=True)
    # nothing secret-looking in it
    text = yaml.safe_dump(body)
    assert "password" not in text.lower() and "token" not in text.lower()
    assert (
        "serviceAccountName"
        not in build_inference_service(
            DeploySettings(serving_service_account=""), model_uri="gs://b/m", model_id=1, eir=None
        )["spec"]["predictor"]
    )


def test_model_patch_changes_only_the_model():
    ds = DeploySettings(isvc_namespace=NS, serving_image=IMAGE)
    body = build_inference_service(ds, model_uri="gs://b/new", model_id=2, eir=0.9, run="r2")
    sidecar = {"name": "sidecar", "image": "x", "args": ["--keep"]}
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
                "containers": [
                    {"name": CONTAINER_NAME, "image": "from-chart", "args": ["--model", "gs://b/old"]},
                    sidecar,
                ],
            }
        },
    }
    patch = model_patch(existing, body)
    assert patch["metadata"]["resourceVersion"] == "41"  # the API server refuses it if the object changed
    assert patch["metadata"]["annotations"] == {
        k: v for k, v in body["metadata"]["annotations"].items() if k.startswith(f"{ANN}/")
    }  # not KServe's deploymentMode
    assert patch["metadata"]["annotations"][f"{ANN}/model-id"] == "2"
    mine, other = patch["spec"]["predictor"]["containers"]
    assert mine == {
        "name": CONTAINER_NAME,
        "image": "from-chart",
        "args": body["spec"]["predictor"]["containers"][0]["args"],
    }
    assert other == sidecar
    assert set(patch["spec"]["predictor"]) == {"containers"}  # replicas etc. untouched
    assert "resourceVersion" not in model_patch({**existing, "metadata": {"name": "alpr"}}, body)["metadata"]
    foreign = {
        "metadata": {"name": "alpr", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }
    with pytest.raises(DeployError, match="no predictor container 'kserve-container'"):
        model_patch(foreign, body)


def test_readable_by_predictor_file_uris():
    mounted = {
        "spec": {
            "predictor": {
                "containers": [{"name": CONTAINER_NAME, "volumeMounts": [{"name": "w", "mountPath": "/mnt/alpr"}]}]
            }
        }
    }
    assert readable_by_predictor("file:///mnt/alpr/storage/m", mounted)
    assert not readable_by_predictor("file:///srv/m", mounted)
    assert not readable_by_predictor("relative/mnt/alpr/m", mounted)
    other = {
        "spec": {
            "predictor": {
                "containers": [{"name": "sidecar", "volumeMounts": [{"name": "w", "mountPath": "/mnt/alpr"}]}]
            }
        }
    }
    assert not readable_by_predictor("/mnt/alpr/storage/m", other)  # only the model server's mounts count


def test_format_eir_and_describe_error():
    assert (format_eir(0.81254), format_eir(None), format_eir(1.0)) == ("0.8125", "n/a", "1.0000")

    class ApiError(Exception):
        status, reason = 403, "Forbidden"
        body = '{"message": "no RBAC"}'

    assert describe_error(ApiError()) == "Kubernetes API answered HTTP 403 Forbidden: no RBAC"
    ApiError.body = "<html>gateway</html>"
    assert describe_error(ApiError()) == "Kubernetes API answered HTTP 403 Forbidden: <html>gateway</html>"
    assert describe_error(ConnectionError("refused")) == "ConnectionError: refused"
