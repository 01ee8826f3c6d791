"""The Deploy step (alpr.steps.deploy): the decision against a real metadata store (SQLite and MariaDB, ``db_url``),
and the InferenceService create / merge-patch (alpr.kubeflow.kserve) against an in-memory Kubernetes API server
(kmock) on loopback."""

import copy
from types import SimpleNamespace

import pytest
import yaml
from kube_emulator import serve_kubernetes, write_kubeconfig

from alpr.kubeflow import kserve
from alpr.kubeflow.kserve import DeployError, DeploySettings
from alpr.metadata import MetadataStore, NotFound
from alpr.settings import Settings
from alpr.steps import deploy as deploy_mod
from alpr.steps.deploy import decide, decision_markdown, deploy_model
from alpr.steps.lineage import ModelLineage, ServiceChange

NS = "alpr-test"
TARGET = f"{NS}/alpr"
ANN = kserve.ANNOTATION_PREFIX


# --- a metadata store with models evaluated on val and test ------------------------------------------------------


@pytest.fixture
def store(db_url):
    s = MetadataStore(db_url)
    s.create_schema()
    with s.transaction() as tx:
        tx.add_annotation_version(
            "av",
            "a" * 40,
            {},
            [{"file_name": "a.jpg", "width": 1280, "height": 720, "md5": "0" * 32, "plate_count": 1}],
        )
        tx.add_training_version("tv", "av", "h" * 64, "b" * 40, 0, (1.0, 0.0, 0.0), {}, {"a.jpg": "train"})
        for run in ("run-1", "run-2", "run-3", "run-4"):
            tx.start_run(run, {}, "test")
    yield s
    s.dispose()


@pytest.fixture
def settings(store, db_url, tmp_path):
    return Settings(workspace=tmp_path / "ws", db_url=db_url)


def add_model(store, run: str, test_eir: float, *, uri=None, val_eir=None) -> int:
    """A selected model of ``run`` with a val and a test evaluation (val deliberately different from test)."""
    with store.transaction() as tx:
        model_id = tx.add_model(
            uri or f"gs://alpr-test/runs/{run}/model", "tv", run, "cfg.py", "c" * 64, "epoch_2.pth", 2, {}
        )
        tx.add_evaluation(model_id, "val", {"eir": 1.0 - test_eir if val_eir is None else val_eir}, run=run)
        tx.add_evaluation(model_id, "test", {"eir": test_eir}, run=run)  # NaN is stored as NULL
        tx.select_model(model_id, "eir", test_eir)
    return model_id


LOCAL = DeploySettings(deploy_target="local")


# --- the rule ----------------------------------------------------------------------------------------------------


def test_decide_rules():
    first = decide(7, 0.7, None, None)
    assert first.deploy and "nothing served" in first.reason and "0.7000" in first.reason
    better = decide(8, 0.75, 7, 0.7)
    assert better.deploy and "0.7500" in better.reason and "0.7000" in better.reason and "+0.0500" in better.reason
    assert (better.served_model_id, better.new_eir, better.served_eir) == (7, 0.75, 0.7)
    equal = decide(8, 0.7, 7, 0.7)
    assert not equal.deploy and "does not beat" in equal.reason and "model 7 stays" in equal.reason
    assert not decide(8, 0.6, 7, 0.7).deploy
    assert not decide(8, 0.74, 7, 0.7, min_improvement=0.05).deploy  # +0.04 is not more than 0.05
    assert decide(8, 0.76, 7, 0.7, min_improvement=0.05).deploy
    same = decide(7, 0.9, 7, 0.9)
    assert not same.deploy and "already served" in same.reason
    nan_new = decide(8, None, 7, 0.5)
    assert not nan_new.deploy and "no EIR" in nan_new.reason and "n/a" in nan_new.reason
    assert not decide(8, None, None, None).deploy
    no_served_eir = decide(8, 0.1, 7, None)
    assert no_served_eir.deploy and "no EIR to compare" in no_served_eir.reason
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_improvement"):
            decide(8, 0.5, 7, 0.4, min_improvement=bad)
    with pytest.raises(ValueError, match="new_eir"):
        decide(8, 1.5, None, None)


# --- decisions against the metadata store (local target) ---------------------------------------------------------


def test_first_deploys_worse_is_skipped_better_deploys(store, settings):
    m1 = add_model(store, "run-1", 0.70)
    first = deploy_model(settings, model_id=m1, run_name="run-1", deploy_settings=LOCAL)
    assert (first.action, first.target, first.served_model_id, first.new_eir) == ("deployed", "local", None, 0.70)
    assert "nothing served at local" in first.reason
    assert first.serve_commands[0] == "make serve MODEL=gs://alpr-test/runs/run-1/model"
    assert "python -m alpr.serving --model gs://alpr-test/runs/run-1/model" in first.serve_commands[1]
    assert store.current_deployment("local")["model_id"] == m1

    m2 = add_model(store, "run-2", 0.65)  # its val EIR (0.35) and test EIR are both worse
    worse = deploy_model(settings, model_id=m2, run_name="run-2", deploy_settings=LOCAL)
    assert (worse.action, worse.served_model_id, worse.served_eir) == ("skipped", m1, 0.70)
    assert "0.6500" in worse.reason and "0.7000" in worse.reason and f"model {m1} stays" in worse.reason
    assert worse.serve_commands  # shown for the skipped model too (local target)
    assert store.current_deployment("local")["model_id"] == m1  # a skip changes nothing served

    m3 = add_model(store, "run-3", 0.80, val_eir=0.10)  # compared on test: its low val EIR does not matter
    better = deploy_model(settings, model_id=m3, run_name="run-3", deploy_settings=LOCAL)
    assert (better.action, better.served_model_id, better.served_eir, better.new_eir) == ("deployed", m1, 0.70, 0.80)
    assert store.current_deployment("local")["model_id"] == m3

    m4 = add_model(store, "run-4", 0.83)
    assert (
        deploy_model(settings, model_id=m4, run_name="run-4", deploy_settings=LOCAL, min_improvement=0.05).action
        == "skipped"
    )

    rows = store.deployments("local")
    assert [
        (r["model_id"], r["action"], r["run"], r["new_eir"], r["served_eir"], r["served_model_id"]) for r in rows
    ] == [
        (m1, "deployed", "run-1", 0.70, None, None),
        (m2, "skipped", "run-2", 0.65, 0.70, m1),
        (m3, "deployed", "run-3", 0.80, 0.70, m1),
        (m4, "skipped", "run-4", 0.83, 0.80, m3),
    ]
    assert rows[2]["storage_uri"] == "gs://alpr-test/runs/run-3/model"
    assert all(r["reason"] and r["created_at"].tzinfo is not None for r in rows)
    assert store.deployments("other/alpr") == [] and len(store.deployments()) == 4


def test_latest_selected_model_is_the_default_and_bad_inputs_are_named(store, settings):
    with pytest.raises(NotFound, match="no selected model"):
        deploy_model(settings, deploy_settings=LOCAL)
    with pytest.raises(NotFound, match="model id 999"):
        deploy_model(settings, model_id=999, deploy_settings=LOCAL)
    with store.transaction() as tx:  # a model without a test evaluation: Test has not run
        untested = tx.add_model("gs://alpr-test/m", "tv", "run-1", "", "", "epoch_1.pth", 1, {})
        tx.add_evaluation(untested, "val", {"eir": 0.5})
    with pytest.raises(ValueError, match=f"model {untested} has no test evaluation"):
        deploy_model(settings, model_id=untested, deploy_settings=LOCAL)
    with pytest.raises(ValueError, match="split"):
        deploy_model(settings, model_id=untested, deploy_settings=LOCAL, split="holdout")
    assert store.deployments() == []
    nan_model = add_model(store, "run-2", float("nan"))  # latest selected; its test EIR is NaN (stored NULL)
    result = deploy_model(settings, deploy_settings=LOCAL)
    assert (result.model_id, result.action, result.new_eir) == (nan_model, "skipped", None)
    assert "no EIR" in result.reason


# --- Kubernetes: an in-memory API server (kmock) in a thread, reached through a kubeconfig -----------------------


@pytest.fixture
def kube(tmp_path, monkeypatch):
    """kmock's KubernetesEmulator on 127.0.0.1 (:func:`kube_emulator.serve_kubernetes`), a kubeconfig pointing at it
    in ``$KUBECONFIG``; yields ``emulator`` (requests and objects for assertions) and ``resource``."""
    import kmock

    with serve_kubernetes() as api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, NS)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("ALPR_DEPLOY_TARGET", raising=False)
        runtimes = kmock.resource(kserve.ISVC_GROUP, kserve.RUNTIME_VERSION, kserve.RUNTIME_PLURAL)
        api.emulator.objects[runtimes, NS, "alpr"] = copy.deepcopy(RUNTIME)  # applied with the manifests / the chart
        yield SimpleNamespace(
            emulator=api.emulator,
            resource=kmock.resource(kserve.ISVC_GROUP, kserve.ISVC_VERSION, kserve.ISVC_PLURAL),
            runtimes=runtimes,
            kubeconfig=kubeconfig,
        )


KUBE = DeploySettings(deploy_target="kubernetes", isvc_namespace=NS, deploy_api_attempts=3)
#: The ServingRuntime of manifests/base/servingruntime.yaml (as the API server holds it).
RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "alpr", "namespace": NS},
    "spec": {
        "supportedModelFormats": [{"name": "alpr", "version": "1", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "ghcr.io/alpr-kubeflow/alpr-serving:test"}],
    },
}


def _isvc(kube) -> dict:
    obj = kube.emulator.objects[kube.resource, NS, "alpr"]
    return yaml.safe_load(yaml.safe_dump(obj.raw))  # plain dicts


def _methods(kube) -> list[str]:
    return [str(r.method.value) for r in kube.emulator]


def _model(isvc: dict) -> dict:
    return isvc["spec"]["predictor"]["model"]


def test_kubernetes_create_then_patch(store, settings, kube):
    m1 = add_model(store, "run-1", 0.70)
    first = deploy_model(settings, model_id=m1, run_name="run-1", deploy_settings=KUBE)
    assert first.action == "deployed" and first.target == TARGET
    assert first.inference_service == ServiceChange(name="alpr", namespace=NS, operation="created")
    assert first.serve_commands == []
    assert _methods(kube) == ["GET", "GET", "POST"]  # read: 404 (none yet) -> its ServingRuntime exists -> create
    isvc = _isvc(kube)
    assert _model(isvc) == {
        "modelFormat": {"name": "alpr", "version": "1"},
        "runtime": "alpr",
        "storageUri": "gs://alpr-test/runs/run-1/model",
    }
    assert "containers" not in isvc["spec"]["predictor"]  # the ServingRuntime's
    assert isvc["metadata"]["annotations"][f"{ANN}/model-id"] == str(m1)
    assert isvc["metadata"]["annotations"][f"{ANN}/eir"] == "0.7000"
    assert isvc["metadata"]["annotations"][f"{ANN}/model-uri"] == "gs://alpr-test/runs/run-1/model"

    m2 = add_model(store, "run-2", 0.60)  # worse: skipped, the API is not called
    assert deploy_model(settings, model_id=m2, run_name="run-2", deploy_settings=KUBE).action == "skipped"
    assert _methods(kube) == ["GET", "GET", "POST"]

    m3 = add_model(store, "run-3", 0.90)  # better: its storageUri patched in place
    better = deploy_model(settings, model_id=m3, run_name="run-3", deploy_settings=KUBE)
    assert better.inference_service.operation == "patched" and better.served_model_id == m1
    assert "InferenceService alpr-test/alpr patched" in better.reason
    assert _methods(kube) == ["GET", "GET", "POST", "GET", "PATCH"]
    patch = list(kube.emulator)[-1]
    assert patch.data["spec"] == {"predictor": {"model": {"storageUri": "gs://alpr-test/runs/run-3/model"}}}
    isvc = _isvc(kube)
    assert _model(isvc)["storageUri"] == "gs://alpr-test/runs/run-3/model" and _model(isvc)["runtime"] == "alpr"
    assert isvc["metadata"]["annotations"][f"{ANN}/model-id"] == str(m3)
    assert isvc["metadata"]["annotations"][f"{ANN}/run"] == "run-3"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert [r["action"] for r in store.deployments(TARGET)] == ["deployed", "skipped", "deployed"]
    assert store.current_deployment(TARGET)["model_id"] == m3
    assert store.deployments("local") == []  # targets are separate


#: The InferenceService as the Helm chart / kustomize manifests make it: the runtime and format, no model yet.
HELM_ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {
        "name": "alpr",
        "namespace": NS,
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment", "owner": "helm"},
    },
    "spec": {
        "predictor": {
            "minReplicas": 2,
            "maxReplicas": 6,
            "serviceAccountName": "alpr-serving",
            "model": {
                "modelFormat": {"name": "alpr", "version": "1"},
                "runtime": "alpr",
                "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}},
            },
        }
    },
}


def test_helm_made_service_gets_its_model_and_keeps_its_settings_and_a_503_is_retried(store, settings, kube):
    kube.emulator.objects[kube.resource, NS, "alpr"] = copy.deepcopy(HELM_ISVC)
    kube.emulator["patch", kube.resource][:1] << 503  # the first patch fails with a retryable error
    m1 = add_model(store, "run-1", 0.5, uri="/mnt/alpr/storage/runs/run-1/model")  # on the workspace PVC
    result = deploy_model(settings, model_id=m1, run_name="run-1", deploy_settings=KUBE)
    assert result.inference_service.operation == "patched"
    assert _methods(kube) == ["GET", "PATCH", "PATCH"]
    isvc = _isvc(kube)
    # the storage initializer mounts the claim's folder at /mnt/models
    assert _model(isvc) == {
        **HELM_ISVC["spec"]["predictor"]["model"],
        "storageUri": "pvc://alpr-workspace/storage/runs/run-1/model",
    }
    assert {k: v for k, v in isvc["spec"]["predictor"].items() if k != "model"} == {
        k: v for k, v in HELM_ISVC["spec"]["predictor"].items() if k != "model"
    }
    assert isvc["metadata"]["annotations"]["owner"] == "helm"  # merge patch: other annotations kept
    assert isvc["metadata"]["annotations"][f"{ANN}/model-id"] == str(m1)
    assert isvc["metadata"]["annotations"][f"{ANN}/model-uri"] == "/mnt/alpr/storage/runs/run-1/model"


def test_failed_api_call_is_recorded_and_raised(store, settings, kube):
    (
        kube.emulator["post", kube.resource]
        << 403
        << {  # the pipeline runner may not create InferenceServices
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 403,
            "reason": "Forbidden",
            "message": 'inferenceservices.serving.kserve.io "alpr" is forbidden: no RBAC for the pipeline runner',
        }
    )
    m1 = add_model(store, "run-1", 0.7)
    with pytest.raises(DeployError, match="HTTP 403.*forbidden: no RBAC"):
        deploy_model(settings, model_id=m1, run_name="run-1", deploy_settings=KUBE)
    assert _methods(kube) == ["GET", "GET", "POST"]  # read: 404, runtime: found, create: 403, not retried
    (row,) = store.deployments(TARGET)
    assert (row["action"], row["model_id"], row["run"], row["new_eir"]) == ("failed", m1, "run-1", 0.7)
    assert "nothing served" in row["reason"] and "FAILED" in row["reason"] and "403" in row["reason"]
    assert store.current_deployment(TARGET) is None  # a failure serves nothing: the next run tries again


def test_unreadable_model_missing_runtime_foreign_service_or_no_cluster_fail_recorded(
    store, settings, kube, tmp_path, monkeypatch
):
    local = add_model(store, "run-1", 0.7, uri=str(tmp_path / "model"))  # not on the workspace PVC
    with pytest.raises(DeployError, match="cannot read model .* outside the workspace PVC alpr-workspace"):
        deploy_model(settings, model_id=local, run_name="run-1", deploy_settings=KUBE)
    assert _methods(kube) == []  # refused before any call
    remote = add_model(store, "run-2", 0.7)
    del kube.emulator.objects[kube.runtimes, NS, "alpr"]
    with pytest.raises(DeployError, match="no ServingRuntime 'alpr' in namespace alpr-test"):
        deploy_model(settings, model_id=remote, run_name="run-2", deploy_settings=KUBE)
    assert _methods(kube) == ["GET", "GET"]  # nothing created
    kube.emulator.objects[kube.resource, NS, "alpr"] = {  # a built-in runtime, not this project's server
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "alpr", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://x"}}},
    }
    with pytest.raises(DeployError, match="does not serve a model of format 'alpr'"):
        deploy_model(settings, model_id=remote, run_name="run-3", deploy_settings=KUBE)
    assert _methods(kube) == ["GET", "GET", "GET"]
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(DeployError, match="no usable Kubernetes configuration"):
        deploy_model(settings, model_id=remote, run_name="run-4", deploy_settings=KUBE)
    assert _methods(kube) == ["GET", "GET", "GET"]
    assert [r["action"] for r in store.deployments(TARGET)] == ["failed", "failed", "failed", "failed"]


def _selected(store, tmp_path, run: str, eir: float) -> tuple[int, object]:
    """A model of ``run`` and the folder Evaluate hands to Deploy (its lineage names the model)."""
    model_id = add_model(store, run, eir)
    model_dir = tmp_path / f"selected-{run}"
    model_dir.mkdir()
    ModelLineage(
        annotation_version="av",
        training_version="tv",
        git_rev="b" * 40,
        hyperparameters={},
        config="cfg.py",
        config_hash="c" * 64,
        candidates={"epoch_2.pth": {"eir": eir}},
        train_uri=f"gs://alpr-test/runs/{run}/train",
        tensorboard_uri=None,
        run_name=run,
        metrics={"eir": eir},
        model_uri=f"gs://alpr-test/runs/{run}/model",
        model_id=model_id,
        checkpoint="epoch_2.pth",
        selection_metric="eir",
    ).write(model_dir)
    return model_id, model_dir


def test_a_run_in_a_pod_deploys_to_the_cluster_by_default(store, settings, kube, tmp_path, monkeypatch):
    """The pipeline's default deploy_target (``auto``, and ``""`` of older runs) deploys from a pod of a cluster."""
    from kubernetes import config

    from alpr.defaults import DEPLOY_DEFAULTS

    monkeypatch.setenv("ALPR_ISVC_NAMESPACE", NS)
    m1, dir1 = _selected(store, tmp_path, "run-1", 0.7)
    m2, dir2 = _selected(store, tmp_path, "run-2", 0.8)
    # in the pod the in-cluster account reaches the API server; here the same kmock server through its kubeconfig
    client = config.new_client_from_config(config_file=str(kube.kubeconfig), persist_config=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # what the kubelet sets in every pod
    out = deploy_mod.deploy_step(
        settings, model_dir=dir1, run_name="run-1", target=DEPLOY_DEFAULTS["deploy_target"], api_client=client
    )
    assert (out.action, out.target, out.inference_service.operation) == ("deployed", TARGET, "created")
    assert _model(_isvc(kube))["storageUri"] == "gs://alpr-test/runs/run-1/model"
    out = deploy_mod.deploy_step(settings, model_dir=dir2, run_name="run-2", target="", api_client=client)
    assert (out.target, out.inference_service.operation) == (TARGET, "patched")
    assert _model(_isvc(kube))["storageUri"] == "gs://alpr-test/runs/run-2/model"
    assert [r["model_id"] for r in store.deployments(TARGET)] == [m1, m2] and store.deployments("local") == []
    # an operator's ALPR_DEPLOY_TARGET=local (the ConfigMap) keeps a cluster's runs from deploying
    monkeypatch.setenv("ALPR_DEPLOY_TARGET", "local")
    m3, dir3 = _selected(store, tmp_path, "run-3", 0.9)
    out = deploy_mod.deploy_step(settings, model_dir=dir3, run_name="run-3", api_client=client)
    assert (out.target, out.inference_service) == ("local", None)
    assert _methods(kube) == ["GET", "GET", "POST", "GET", "PATCH"]  # nothing more


# --- the step, the Markdown, the CLI -----------------------------------------------------------------------------


def test_deploy_step_markdown_and_cli(store, settings, tmp_path, monkeypatch, capsys):
    import json

    for key, value in settings.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ALPR_DEPLOY_TARGET", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # auto, outside a cluster: local
    m1 = add_model(store, "run-1", 0.7)
    model_dir = tmp_path / "selected"
    model_dir.mkdir()
    selected = ModelLineage(
        annotation_version="av",
        training_version="tv",
        git_rev="b" * 40,
        hyperparameters={},
        config="cfg.py",
        config_hash="c" * 64,
        candidates={"epoch_2.pth": {"eir": 0.3}},
        train_uri="gs://alpr-test/runs/run-1/train",
        tensorboard_uri=None,
        run_name="run-1",
        metrics={"eir": 0.3},
        model_uri="gs://alpr-test/runs/run-1/model",
        model_id=m1,
        checkpoint="epoch_2.pth",
        selection_metric="eir",
    )
    selected.write(model_dir)
    out = deploy_mod.deploy_step(settings, model_dir=model_dir, run_name="run-1")
    assert out.action == "deployed" and out.target == "local"
    md = decision_markdown(out)
    assert "**deployed**" in md and "0.7000" in md and "make serve MODEL=gs://alpr-test/runs/run-1/model" in md
    with pytest.raises(ValueError, match="one of auto, local, kubernetes, got 'cloud'"):
        deploy_mod.deploy_step(settings, model_dir=model_dir, run_name="run-1", target="cloud")
    not_a_model = tmp_path / "candidates"  # Train's folder, say: no model_id in its lineage
    not_a_model.mkdir()
    (not_a_model / "lineage.json").write_text(json.dumps({"run_name": "run-1", "val_metrics": {}}))
    with pytest.raises(ValueError, match="candidates/lineage.json: missing field.*not a ModelLineage"):
        deploy_mod.deploy_step(settings, model_dir=not_a_model, run_name="run-1")

    add_model(store, "run-2", 0.9)
    assert deploy_mod.main(["--model", "latest", "--run", "run-2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("deployed: ") and "serve:  make serve MODEL=gs://alpr-test/runs/run-2/model" in printed
    assert deploy_mod.main(["--model", str(m1), "--manifest"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "gs://alpr-test/runs/run-1/model"
    assert deploy_mod.main(["--model", "999"]) == 1
    assert "model id 999" in capsys.readouterr().err
    assert [r["action"] for r in store.deployments("local")] == ["deployed", "deployed"]
