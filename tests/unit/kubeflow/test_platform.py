"""The kfp-kubernetes platform config compiled into the pipeline (alpr.kubeflow.platform), offline: no cluster."""

import json

import pytest
import yaml
from k8s_tools import secret_values

from alpr.kubeflow import platform as kfp_platform
from alpr.kubeflow.platform import PlatformSettings
from pipelines import run as pipeline

STEPS = ["record", "train", "evaluate", "test", "deploy", "finish"]


def _tasks(spec) -> dict:
    """Every task of the compiled pipeline by name: the root's and those of its nested DAGs (the exit handler's,
    the Tune condition's branches)."""
    dags = [spec["root"], *(c for c in spec["components"].values() if "dag" in c)]
    return {name: task for comp in dags for name, task in comp["dag"]["tasks"].items()}


def _compile(tmp_path, settings: PlatformSettings | None = None):
    """Compile the real pipeline: as imported (``settings`` None), or rebuilt with ``settings``."""
    from kfp import compiler

    out = tmp_path / "p.yaml"
    if settings is None:
        pipeline.compile_pipeline(out)
    else:
        compiler.Compiler().compile(kfp_platform.with_platform(pipeline.alpr_pipeline, settings), str(out))
    spec, platform = yaml.safe_load_all(out.read_text())
    return out, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(autouse=True)
def _no_platform_env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("ALPR_K8S_"):
            monkeypatch.delenv(key)


def test_every_task_carries_secrets_configmap_pvc_and_env(tmp_path):
    _, spec, executors = _compile(tmp_path)
    tasks = _tasks(spec)
    for step in STEPS:
        assert step in tasks, f"pipeline lost task {step}"
        ex = executors[f"exec-{step}"]
        (db,) = ex["secretAsEnv"]
        assert db["secretName"] == "alpr-db" and db["optional"] is False
        assert {(m["secretKey"], m["envVar"]) for m in db["keyToEnv"]} == {
            ("url", "ALPR_DB_URL"),
            ("password", "ALPR_DB_PASSWORD"),
        }
        (cm,) = ex["configMapAsEnv"]
        assert cm["configMapName"] == "alpr-config"
        assert {m["envVar"] for m in cm["keyToEnv"]} == {
            "ALPR_STORAGE_URI",
            "ALPR_DATASET_REPO",
            "ALPR_DVC_REMOTE",
            "ALPR_DEPLOY_TARGET",
            "ALPR_MONITOR_URL",
        }
        (pvc,) = ex["pvcMount"]
        assert pvc["constant"] == "alpr-workspace" and pvc["mountPath"] == "/mnt/alpr"
        vols = {v["secretName"]: v for v in ex["secretAsVolume"]}
        assert vols["alpr-gcs-key"]["mountPath"] == "/var/secrets/google" and vols["alpr-gcs-key"]["optional"]
        assert ("alpr-git" in vols) == (step == "record")  # only Record talks to the dataset git server
        env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["env"]}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/google/key.json"
        assert env["ALPR_WORKSPACE"] == "/mnt/alpr" and env["ALPR_CACHE_DIR"] == "/mnt/alpr/cache"


def test_no_task_is_left_without_platform_config(tmp_path):
    """A task added to the pipeline without its apply_platform line would run without DB, PVC or resources."""
    _, spec, executors = _compile(tmp_path)
    for name, task in _tasks(spec).items():
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:  # a group (exit handler, condition): its tasks are checked themselves
            continue
        executor = component["executorLabel"]
        assert "secretAsEnv" in executors.get(executor, {}), f"task {name} has no apply_platform(...)"
        assert "resourceCpuLimit" in spec["deploymentSpec"]["executors"][executor]["container"]["resources"], name


def test_resources_gpu_retries_and_caching(tmp_path):
    _, spec, executors = _compile(tmp_path)
    containers = {s: spec["deploymentSpec"]["executors"][f"exec-{s}"]["container"] for s in STEPS}
    for step in STEPS:
        res = containers[step]["resources"]
        want = kfp_platform.DEFAULT_RESOURCES[step]
        assert (res["resourceCpuRequest"], res["resourceCpuLimit"]) == (want.cpu_request, want.cpu_limit)
        assert (res["resourceMemoryRequest"], res["resourceMemoryLimit"]) == (want.memory_request, want.memory_limit)
        assert ("accelerator" in res) == (step == "train")
    acc = containers["train"]["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu" and acc["resourceCount"] == "1"
    assert executors["exec-train"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    tasks = _tasks(spec)
    for step in ("record", "evaluate", "test", "deploy", "finish"):
        assert tasks[step]["retryPolicy"]["maxRetryCount"] == 3, step
        assert tasks[step]["retryPolicy"]["backoffDuration"] == "30s"
    assert "retryPolicy" not in tasks["train"]
    assert tasks["record"]["cachingOptions"] == {"enableCache": True}
    assert not tasks["train"]["cachingOptions"].get("enableCache")  # retraining trains again
    assert not tasks["deploy"]["cachingOptions"].get("enableCache")  # changes the cluster: never cached
    assert not tasks["finish"]["cachingOptions"].get("enableCache")  # records how this very run ended
    assert not tasks["tune"]["cachingOptions"].get("enableCache")  # starts a Katib Experiment


def test_every_task_gets_its_run_from_the_pod_label_not_an_input(tmp_path):
    """ALPR_RUN_NAME from the downward API (the KFP run id on every pod of the run): no run-specific input."""
    _, spec, executors = _compile(tmp_path)
    for name, executor in executors.items():
        assert {"name": "ALPR_RUN_NAME", "fieldPath": "metadata.labels['pipeline/runid']"} in executor[
            "fieldPathAsEnv"
        ], name
    assert kfp_platform.RUN_NAME_ENV == "ALPR_RUN_NAME"


def test_settings_change_the_compiled_config(tmp_path):
    settings = PlatformSettings(
        db_secret="prod-db",
        gcs_key_secret="",
        git_secret="",
        pvc="",
        train_gpus=2,
        accelerator_type="amd.com/gpu",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        tolerations=[{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
        resources={"train": {"cpu_request": "6", "cpu_limit": "8", "memory_request": "20Gi", "memory_limit": "30Gi"}},
        retries=0,
        train_caching=True,
        image_pull_secrets=["regcred"],
    )
    _, spec, executors = _compile(tmp_path, settings)
    train = executors["exec-train"]
    assert train["secretAsEnv"][0]["secretName"] == "prod-db"
    assert "secretAsVolume" not in train and "pvcMount" not in train
    assert train["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}
    assert train["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    assert train["imagePullSecret"] == [
        {"secretName": "regcred", "secretNameParameter": {"runtimeValue": {"constant": "regcred"}}}
    ]
    res = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert res["accelerator"]["resourceType"] == "amd.com/gpu" and res["accelerator"]["resourceCount"] == "2"
    assert res["resourceCpuRequest"] == "6" and res["resourceMemoryLimit"] == "30Gi"
    assert "env" not in spec["deploymentSpec"]["executors"]["exec-record"]["container"]
    tasks = _tasks(spec)
    assert all("retryPolicy" not in tasks[s] for s in STEPS)
    assert tasks["train"]["cachingOptions"] == {"enableCache": True}


def test_cpu_only_training_has_no_gpu_scheduling(tmp_path):
    _, spec, executors = _compile(tmp_path, PlatformSettings(train_gpus=0, node_selector={"pool": "gpu"}))
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "tolerations" not in executors["exec-train"] and "nodeSelector" not in executors["exec-train"]


def test_environment_sets_the_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_K8S_DB_SECRET", "from-env")
    monkeypatch.setenv("ALPR_K8S_NODE_SELECTOR", json.dumps({"gpu": "l4"}))
    _, _, executors = _compile(tmp_path, PlatformSettings())
    assert executors["exec-test"]["secretAsEnv"][0]["secretName"] == "from-env"
    assert executors["exec-train"]["nodeSelector"] == {"labels": {"gpu": "l4"}}


def test_compiled_yaml_holds_no_secret_values(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_DB_PASSWORD", "s3cr3t-pw-value")
    monkeypatch.setenv("ALPR_DB_URL", "mysql+pymysql://alpr:hunter2@db:3306/alpr")
    out, spec, executors = _compile(tmp_path)
    text = out.read_text()
    assert "s3cr3t-pw-value" not in text and "hunter2" not in text
    assert secret_values(spec) == [] and secret_values(executors) == []
    assert list(yaml.safe_load_all(text))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="unknown step"):
        PlatformSettings(
            resources={"trian": {"cpu_request": "1", "cpu_limit": "1", "memory_request": "1Gi", "memory_limit": "1Gi"}}
        )
    with pytest.raises(ValueError, match="absolute path"):
        PlatformSettings(pvc_mount="mnt/alpr")
    with pytest.raises(ValueError, match="operator"):
        PlatformSettings(tolerations=[{"key": "gpu", "operator": "Maybe"}])
    from kfp import dsl

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def noop():
        pass

    def p():
        kfp_platform.apply_platform(noop(), "serve")

    with pytest.raises(ValueError, match="unknown step 'serve'"):
        dsl.pipeline(p)  # KFP builds the graph when decorating


def test_local_runs_are_unaffected_by_the_platform_config(tmp_path):
    """kfp.local's SubprocessRunner ignores platform config, resources, retries and container env: a task with all
    of them applied runs and sees neither ALPR_WORKSPACE=/mnt/alpr nor a mounted secret."""
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def where() -> str:
        import os

        return os.environ.get("ALPR_WORKSPACE", "unset")

    @dsl.pipeline
    def p() -> str:
        t = where()
        kfp_platform.apply_platform(t, "train")
        return t.output

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    assert p().output != "/mnt/alpr"
