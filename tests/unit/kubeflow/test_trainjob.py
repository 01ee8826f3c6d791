"""The Kubeflow Trainer TrainJob of a distributed Train: its object (validated against Trainer v2.3.0's CRD), the pod
template taken from the step's own pod, and creating / following / cancelling it against an in-memory Kubernetes API.

The API server is kmock's ``KubernetesEmulator`` (PyPI ``kmock``) on 127.0.0.1, in a thread with its own event loop;
the kubernetes client talks HTTP to it as to a cluster. Trainer's controller cannot run here: the tests play its
part by patching the stored TrainJob's status (Complete / Failed), as the controller does from the JobSet's.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import pytest
from k8s_tools import validate_custom
from kube_emulator import serve_kubernetes

from alpr.kubeflow import trainjob as tj
from alpr.kubeflow.platform import DEFAULT_RESOURCES, RUN_ID_FIELD_PATH

NS = "kubeflow-user"
IMAGE = "ghcr.io/alpr-kubeflow/alpr-components:test"
RUN_ID = "5a1d0c2e-7f3b-4c8a-9e21-0d6f4b3a2c11"
COMMAND = ("torchrun", "--max-restarts=1", "-m", "alpr.model.distributed", "/mnt/alpr/work/run/distributed_config.py")
TRAINJOBS = ("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs")


@pytest.fixture(autouse=True)
def _platform_defaults(monkeypatch):
    """The platform settings (ALPR_K8S_*) and the training runtime at their defaults."""
    for key in [k for k in os.environ if k.startswith("ALPR_K8S_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv(tj.RUNTIME_ENV, raising=False)


# --------------------------------------------------------------------------------------------------- fixtures
def _step_pod() -> dict:
    """A Train step's pod as KFP v2 (Argo) makes it, with what alpr.kubeflow.platform.apply_platform adds."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "alpr-pipeline-x7k2p-system-container-impl-1234567890",
            "namespace": NS,
            "labels": {
                "pipeline/runid": RUN_ID,
                "pipelines.kubeflow.org/v2_component": "true",
                "workflows.argoproj.io/workflow": "alpr-pipeline-x7k2p",
            },
            "annotations": {"workflows.argoproj.io/node-name": "alpr-pipeline-x7k2p.train"},
        },
        "spec": {
            "serviceAccountName": "pipeline-runner",
            "imagePullSecrets": [{"name": "ghcr-pull"}],
            "nodeSelector": {"cloud.google.com/gke-nodepool": "cpu-pool"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "initContainers": [
                {
                    "name": "kfp-launcher",
                    "image": "ghcr.io/kubeflow/kfp-launcher:2.5.0",
                    "command": ["launcher-v2", "--copy", "/kfp-launcher/launch"],
                    "volumeMounts": [{"name": "kfp-launcher", "mountPath": "/kfp-launcher"}],
                }
            ],
            "containers": [
                {
                    "name": "wait",
                    "image": "quay.io/argoproj/argoexec:v3.5.14",
                    "command": ["argoexec", "wait"],
                    "env": [{"name": "ARGO_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}],
                },
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": ["/var/run/argo/argoexec", "emissary", "--", "/kfp-launcher/launch"],
                    "env": [
                        {"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "KFP_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "ARGO_CONTAINER_NAME", "value": "main"},
                        {"name": "ALPR_RUN_NAME", "valueFrom": {"fieldRef": {"fieldPath": RUN_ID_FIELD_PATH}}},
                        {"name": "ALPR_DB_URL", "valueFrom": {"secretKeyRef": {"name": "alpr-db", "key": "url"}}},
                        {
                            "name": "ALPR_DB_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "alpr-db", "key": "password"}},
                        },
                        {
                            "name": "ALPR_STORAGE_URI",
                            "valueFrom": {"configMapKeyRef": {"name": "alpr-config", "key": "ALPR_STORAGE_URI"}},
                        },
                        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/google/key.json"},
                        {"name": "ALPR_WORKSPACE", "value": "/mnt/alpr"},
                        {"name": "ALPR_CACHE_DIR", "value": "/mnt/alpr/cache"},
                    ],
                    "resources": {"requests": {"cpu": "4", "memory": "12Gi"}, "limits": {"cpu": "8", "memory": "24Gi"}},
                    "volumeMounts": [
                        {"name": "kfp-launcher", "mountPath": "/kfp-launcher"},
                        {"name": "var-run-argo", "mountPath": "/var/run/argo"},
                        {"name": "gcs-scratch", "mountPath": "/gcs"},
                        {"name": "dot-cache-scratch", "mountPath": "/.cache"},
                        {"name": "alpr-workspace", "mountPath": "/mnt/alpr"},
                        {"name": "alpr-gcs-key", "mountPath": "/var/secrets/google"},
                        {
                            "name": "kube-api-access-x9z8w",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        },
                    ],
                },
            ],
            "volumes": [
                {"name": "kfp-launcher", "emptyDir": {}},
                {"name": "var-run-argo", "emptyDir": {}},
                {"name": "gcs-scratch", "emptyDir": {}},
                {"name": "dot-cache-scratch", "emptyDir": {}},
                {"name": "alpr-workspace", "persistentVolumeClaim": {"claimName": "alpr-workspace"}},
                {"name": "alpr-gcs-key", "secret": {"secretName": "alpr-gcs-key", "optional": True}},
                {
                    "name": "kube-api-access-x9z8w",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                },
            ],
        },
    }


def _template() -> tj.PodTemplate:
    return tj.pod_template_from_pod(_step_pod())


def _request(**kwargs) -> tj.TrainJobRequest:
    return tj.TrainJobRequest(**{"name": tj.trainjob_name(RUN_ID), "command": COMMAND, "workers": 2, **kwargs})


@pytest.fixture
def kube():
    """kmock's in-memory Kubernetes API on 127.0.0.1 serving TrainJobs and pods; yields ``emulator``, ``custom`` and
    ``core`` (the kubernetes client's APIs bound to it)."""
    import kmock

    with serve_kubernetes({"trainer.kubeflow.org/v1alpha1/trainjobs": "TrainJob"}) as api:
        api.trainjobs = kmock.resource("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        yield api


def _names(kube) -> list[str]:
    listing = kube.custom.list_namespaced_custom_object(*TRAINJOBS)
    return [o["metadata"]["name"] for o in listing.get("items") or []]


def _methods(kube) -> list[str]:
    return [str(r.method.value) for r in kube.emulator]


def _run(kube, request: tj.TrainJobRequest, **kwargs) -> tj.TrainJobOutcome:
    """``tj.run_trainjob(request)`` against ``kube`` in ``NS`` with the step pod's template, polling every 50 ms and
    discarding what it echoes; ``kwargs`` add to or override those."""
    defaults = {
        "namespace": NS,
        "custom_api": kube.custom,
        "core_api": kube.core,
        "template": _template(),
        "poll_s": 0.05,
        "echo": lambda line: None,
    }
    return tj.run_trainjob(request, **{**defaults, **kwargs})


def _controller(kube, name: str, condition: dict, *, after: float = 0.3, jobs: bool = True) -> threading.Thread:
    """Play Trainer's controller: once the TrainJob exists, report its job running, then (after ``after`` s) set
    ``condition`` -- what the controller copies from the JobSet."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while name not in _names(kube):
            assert time.monotonic() < deadline, f"TrainJob {name} was never created"
            time.sleep(0.02)
        if jobs:
            status = {
                "jobsStatus": [{"name": "node", "ready": 2, "succeeded": 0, "failed": 0, "active": 2, "suspended": 0}]
            }
            kube.custom.patch_namespaced_custom_object_status(*TRAINJOBS, name, {"status": status})
        time.sleep(after)
        kube.custom.patch_namespaced_custom_object_status(
            *TRAINJOBS, name, {"status": {"conditions": [{"status": "True", **condition}]}}
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


COMPLETE = {
    "type": "Complete",
    "reason": "AllJobsCompleted",
    "message": "jobset completed successfully",
    "lastTransitionTime": "2026-11-29T23:00:00Z",
}
FAILED = {
    "type": "Failed",
    "reason": "FailedJobs",
    "message": "jobset failed due to one or more job failures",
    "lastTransitionTime": "2026-11-29T23:00:00Z",
}


# --------------------------------------------------------------------------------------------------- object
def test_a_cpu_trainjob_validates_against_the_crd_and_runs_one_process_per_pod():
    body = tj.build_trainjob(_request(), _template(), labels={"alpr-kubeflow.github.io/run": RUN_ID}, namespace=NS)
    validate_custom(body)
    assert (body["apiVersion"], body["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert body["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    trainer = body["spec"]["trainer"]
    train = DEFAULT_RESOURCES["train"]
    assert trainer["image"] == IMAGE and trainer["command"] == list(COMMAND)
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": train.cpu_request, "memory": train.memory_request},
        "limits": {"cpu": train.cpu_limit, "memory": train.memory_limit},
    }
    env = {e["name"]: e for e in trainer["env"]}
    assert env["ALPR_RUN_NAME"] == {"name": "ALPR_RUN_NAME", "value": RUN_ID}
    assert env["PYTHONUNBUFFERED"]["value"] == "1"
    assert not set(env) & tj.RESERVED_ENV  # Trainer's torch plugin sets those
    [patch] = body["spec"]["runtimePatches"]
    assert patch["manager"] == tj.PATCH_MANAGER
    [job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    pod = job["template"]["spec"]["template"]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "pipeline-runner"
    assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert [c["name"] for c in spec["containers"]] == ["node"] and "env" not in spec["containers"][0]
    assert {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]} == {"/mnt/alpr", "/var/secrets/google"}
    assert {v["name"] for v in spec["volumes"]} == {"alpr-workspace", "alpr-gcs-key"}
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert pod["metadata"]["labels"]["alpr-kubeflow.github.io/run"] == RUN_ID
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert body["metadata"]["labels"]["app.kubernetes.io/component"] == "training"


def test_a_gpu_trainjob_validates_and_asks_each_pod_for_its_gpus(monkeypatch):
    monkeypatch.setenv("ALPR_K8S_NODE_SELECTOR", '{"cloud.google.com/gke-accelerator": "nvidia-l4"}')
    monkeypatch.setenv(tj.RUNTIME_ENV, "torch-distributed-gpu")
    request = _request(workers=3, gpus_per_worker=4, cpu_request="16", cpu_limit="16")
    body = tj.build_trainjob(request, _template(), namespace=NS)
    validate_custom(body)
    trainer = body["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "16", "memory": "24Gi", "nvidia.com/gpu": 4}
    assert body["spec"]["runtimeRef"]["name"] == "torch-distributed-gpu"
    spec = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    spec = spec["template"]["spec"]["template"]["spec"]
    # the step pod's placement plus the platform's GPU node pool and its taint
    assert spec["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "cpu-pool",
        "cloud.google.com/gke-accelerator": "nvidia-l4",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    amd = tj.build_trainjob(_request(gpus_per_worker=1, accelerator="amd.com/gpu"), _template())
    validate_custom({**amd, "metadata": {**amd["metadata"], "namespace": NS}})
    assert amd["spec"]["trainer"]["resourcesPerNode"]["limits"]["amd.com/gpu"] == 1


def test_a_minimal_template_makes_a_minimal_patch():
    template = tj.PodTemplate(image=IMAGE)
    body = tj.build_trainjob(_request(workers=1), template, namespace=NS)
    validate_custom(body)
    pod = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["spec"] == {}
    assert body["spec"]["trainer"]["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"}]


def test_trainjob_names_are_valid_stable_and_distinct_per_run():
    name = tj.trainjob_name("Alpr Pipeline 2026-11-29 23:00:00.123 (nightly retrain)")
    assert name == tj.trainjob_name("Alpr Pipeline 2026-11-29 23:00:00.123 (nightly retrain)")
    assert name.startswith("alpr-train-alpr-pipeline-") and len(name) <= tj.NAME_LENGTH
    assert tj._DNS_1035.match(name)
    assert tj.trainjob_name("run-1") != tj.trainjob_name("RUN 1")  # same sanitised text, other hash
    assert tj.trainjob_name("run-1", "trial-a") != tj.trainjob_name("run-1", "trial-b")
    assert tj._DNS_1035.match(tj.trainjob_name("")) and tj._DNS_1035.match(tj.trainjob_name("___"))
    tj.TrainJobRequest(name=tj.trainjob_name("x" * 200), command=COMMAND, workers=10_000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "Alpr-Train"}, "name"),
        ({"name": "1-train"}, "name"),
        ({"name": "a" * 60}, "name"),  # the last rank's host name would pass 63 characters
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"gpus_per_worker": -1}, "gpus_per_worker"),
        ({"gpus_per_worker": True}, "gpus_per_worker"),
        ({"command": ()}, "command"),
        ({"command": ("torchrun", "")}, "command"),
        ({"cpu_request": "four"}, "cpu_request"),
        ({"memory_limit": "24 GB"}, "memory_limit"),
        ({"gpus_per_worker": 1, "accelerator": "gpu"}, "accelerator"),
        ({"runtime": "Torch Distributed"}, "runtime"),
        ({"runtime_kind": "JobSet"}, "runtime_kind"),
        ({"env": ({"name": "PET_MASTER_ADDR", "value": "x"},)}, "env"),
        ({"env": ({"value": "x"},)}, "env"),
    ],
)
def test_request_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"TrainJobRequest\.{field}\b"):
        _request(**kwargs)


def test_the_request_env_is_added_and_wins():
    request = _request(
        env=({"name": "ALPR_WORKSPACE", "value": "/mnt/alpr/other"}, {"name": "NCCL_DEBUG", "value": "WARN"})
    )
    env = tj.build_trainjob(request, _template())["spec"]["trainer"]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    by_name = {e["name"]: e for e in env}
    assert by_name["ALPR_WORKSPACE"]["value"] == "/mnt/alpr/other" and by_name["NCCL_DEBUG"]["value"] == "WARN"


# --------------------------------------------------------------------------------------------------- template
def test_the_step_pod_template_keeps_the_platform_and_drops_kfp(kube):
    pod = _step_pod()
    kube.emulator.objects[_pods_resource(), NS, pod["metadata"]["name"]] = copy.deepcopy(pod)
    template = tj.step_pod_template(kube.core, NS, pod["metadata"]["name"])
    assert template.image == IMAGE
    env = {e["name"]: e for e in template.env}
    assert list(env) == [
        "ALPR_RUN_NAME",
        "ALPR_DB_URL",
        "ALPR_DB_PASSWORD",
        "ALPR_STORAGE_URI",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "ALPR_WORKSPACE",
        "ALPR_CACHE_DIR",
    ]
    assert env["ALPR_RUN_NAME"] == {"name": "ALPR_RUN_NAME", "value": RUN_ID}  # the pod's label, as a literal
    assert env["ALPR_DB_URL"]["valueFrom"] == {"secretKeyRef": {"name": "alpr-db", "key": "url"}}
    assert env["ALPR_STORAGE_URI"]["valueFrom"] == {
        "configMapKeyRef": {"name": "alpr-config", "key": "ALPR_STORAGE_URI"}
    }
    assert [m["name"] for m in template.volume_mounts] == ["alpr-workspace", "alpr-gcs-key"]
    assert {v["name"]: v for v in template.volumes} == {
        "alpr-workspace": {"name": "alpr-workspace", "persistentVolumeClaim": {"claimName": "alpr-workspace"}},
        "alpr-gcs-key": {"name": "alpr-gcs-key", "secret": {"secretName": "alpr-gcs-key", "optional": True}},
    }
    assert template.service_account == "pipeline-runner" and template.image_pull_secrets == ("ghcr-pull",)
    assert template.node_selector == {"cloud.google.com/gke-nodepool": "cpu-pool"}
    assert [t["key"] for t in template.tolerations] == ["dedicated"]
    assert template == _template()  # read through the API == from the JSON


def test_the_step_pod_is_found_from_the_pod_itself(kube, tmp_path, monkeypatch):
    pod = _step_pod()
    kube.emulator.objects[_pods_resource(), NS, pod["metadata"]["name"]] = copy.deepcopy(pod)
    ns_file = tmp_path / "namespace"
    ns_file.write_text(NS + "\n")
    monkeypatch.setattr(tj, "POD_NAMESPACE_FILE", ns_file)
    monkeypatch.setenv("HOSTNAME", pod["metadata"]["name"])
    assert tj.step_pod_template(kube.core).image == IMAGE
    monkeypatch.setenv("HOSTNAME", "not-this-pod")
    with pytest.raises(tj.TrainJobError, match="not-this-pod does not exist"):
        tj.step_pod_template(kube.core)
    monkeypatch.setattr(tj, "POD_NAMESPACE_FILE", tmp_path / "missing")
    with pytest.raises(tj.TrainJobError, match="namespace is unknown"):
        tj.step_pod_template(kube.core)


def test_a_pod_without_the_step_container_is_refused():
    pod = _step_pod()
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "main"]
    # outside KFP: a pod whose one container (besides Argo's and Istio's) is the step's
    pod["spec"]["containers"].append({**main, "name": "train"})
    assert tj.pod_template_from_pod(pod).image == IMAGE
    pod["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    with pytest.raises(tj.TrainJobError, match="no container 'main'"):
        tj.pod_template_from_pod(pod)
    with pytest.raises(ValueError, match="volume_mounts name volumes"):
        tj.PodTemplate(image=IMAGE, volume_mounts=({"name": "x", "mountPath": "/mnt/alpr"},))


def _pods_resource():
    import kmock

    return kmock.resource("", "v1", "pods")


# --------------------------------------------------------------------------------------------------- follow
def test_create_then_complete_gives_the_outcome(kube):
    request = _request()
    controller = _controller(kube, request.name, COMPLETE)
    lines: list[str] = []
    outcome = _run(kube, request, labels={"alpr-kubeflow.github.io/run": RUN_ID}, echo=lines.append)
    controller.join(5)
    assert (outcome.name, outcome.namespace, outcome.condition) == (request.name, NS, "Complete")
    assert (outcome.reason, outcome.message) == ("AllJobsCompleted", "jobset completed successfully")
    assert outcome.duration_s > 0.2
    stored = kube.custom.get_namespaced_custom_object(*TRAINJOBS, request.name)
    assert (
        stored["spec"]
        == tj.build_trainjob(request, _template(), labels={"alpr-kubeflow.github.io/run": RUN_ID})["spec"]
    )
    assert f"created TrainJob {NS}/{request.name}" in lines
    hints = [line for line in lines if "kubectl" in line and "logs -f" in line]
    assert hints == [f"follow its logs: kubectl -n {NS} logs -f -l {tj.rank0_selector(request.name)} -c node"]
    assert any("node: 2 active, 2 ready" in line for line in lines)
    assert _names(kube) == [request.name]  # kept: the Train step reads its checkpoints next


def test_a_failed_trainjob_raises_with_the_operators_reason_and_is_kept(kube):
    request = _request()
    _controller(kube, request.name, FAILED, after=0.1)
    with pytest.raises(tj.TrainJobFailed, match="FailedJobs: jobset failed due to one or more job failures") as info:
        _run(kube, request)
    assert (info.value.reason, info.value.message) == ("FailedJobs", "jobset failed due to one or more job failures")
    assert info.value.name == request.name and "kubectl" in str(info.value)
    assert _names(kube) == [request.name]  # kept, with its pods' logs
    assert "DELETE" not in _methods(kube)


def test_sigterm_while_following_deletes_the_trainjob_and_propagates(kube):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGTERM is handled in the main thread only; elsewhere it would end the test process")
    request = _request()
    previous = signal.getsignal(signal.SIGTERM)

    def cancel() -> None:
        deadline = time.monotonic() + 10
        while request.name not in _names(kube):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet sends when KFP deletes the step's pod

    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    lines: list[str] = []
    with pytest.raises(tj.TrainJobCancelled, match="SIGTERM"):
        _run(kube, request, timeout_s=60, echo=lines.append)
    thread.join(5)
    assert _names(kube) == []
    assert f"deleted TrainJob {NS}/{request.name}" in lines
    assert signal.getsignal(signal.SIGTERM) is previous  # restored


def test_keyboard_interrupt_deletes_the_trainjob_and_propagates(kube):
    request = _request()

    def interrupt(line: str) -> None:  # Ctrl-C while following: raised where the step echoes, once the job exists
        if "kubectl" in line:
            assert request.name in _names(kube)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(kube, request, timeout_s=60, echo=interrupt)
    assert _names(kube) == []


def test_a_timeout_deletes_the_trainjob(kube):
    request = _request()
    with pytest.raises(tj.TrainJobTimeout, match="did not finish within 0.3 s"):
        _run(kube, request, timeout_s=0.3)
    assert _names(kube) == []


def test_an_existing_trainjob_of_an_earlier_attempt_is_followed_not_created_again(kube):
    request = _request()
    earlier = tj.build_trainjob(request, _template(), namespace=NS)
    earlier["spec"]["trainer"]["command"] = ["torchrun", "earlier-attempt"]
    kube.custom.create_namespaced_custom_object(*TRAINJOBS, earlier)
    _controller(kube, request.name, COMPLETE, after=0.2)
    lines: list[str] = []
    outcome = _run(kube, request, echo=lines.append)
    assert outcome.condition == "Complete"
    assert _names(kube) == [request.name]
    stored = kube.custom.get_namespaced_custom_object(*TRAINJOBS, request.name)
    assert stored["spec"]["trainer"]["command"] == ["torchrun", "earlier-attempt"]  # the earlier one, untouched
    assert any("exists already" in line for line in lines)
    assert not any(line.startswith("created TrainJob") for line in lines)


def test_a_foreign_trainjob_of_the_same_name_is_refused_and_left_alone(kube):
    request = _request()
    kube.custom.create_namespaced_custom_object(
        *TRAINJOBS,
        {
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "metadata": {"name": request.name, "namespace": NS},
            "spec": {"runtimeRef": {"name": "torch-distributed"}},
        },
    )
    with pytest.raises(tj.TrainJobError, match="not an ALPR training"):
        _run(kube, request)
    assert _names(kube) == [request.name]


def test_a_trainjob_deleted_by_someone_else_is_an_error(kube):
    request = _request()

    def delete() -> None:
        deadline = time.monotonic() + 10
        while request.name not in _names(kube):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.1)
        kube.custom.delete_namespaced_custom_object(*TRAINJOBS, request.name)

    threading.Thread(target=delete, daemon=True).start()
    with pytest.raises(tj.TrainJobError, match="no longer exists"):
        _run(kube, request)


# --------------------------------------------------------------------------------------------------- logs
def test_rank0_log_lines_are_echoed_once_each():
    lines: list[str] = []
    follower = tj._RankZeroLog(None, NS, "job", lines.append)
    follower._echo_new(
        "2026-11-29T23:00:01.5Z epoch 1\n2026-11-29T23:00:01.5Z same stamp\n2026-11-29T23:00:02Z epoch 2\n"
    )
    # the next read starts a little earlier (sinceSeconds), so it repeats what was echoed
    follower._echo_new(
        "2026-11-29T23:00:01.5Z epoch 1\n2026-11-29T23:00:02Z epoch 2\n2026-11-29T23:00:02.000000001Z epoch 3\n"
    )
    assert lines == ["epoch 1", "same stamp", "epoch 2", "epoch 3"]


def _worker_pod(job: str, rank: int, created: str) -> dict:
    """A pod of TrainJob ``job`` with the labels JobSet and the Job controller give it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job}-node-0-{rank}-abcde",
            "namespace": NS,
            "creationTimestamp": created,
            "labels": {
                tj.JOBSET_NAME_LABEL: job,
                tj.REPLICATED_JOB_LABEL: "node",
                "jobset.sigs.k8s.io/job-index": "0",
                tj.COMPLETION_INDEX_LABEL: str(rank),
            },
        },
        "spec": {"containers": [{"name": "node", "image": IMAGE}]},
    }


def test_the_rank0_pods_log_is_echoed_while_following(kube):
    import kmock

    request = _request()
    for rank in (0, 1):
        pod = _worker_pod(request.name, rank, "2026-11-29T23:00:00Z")
        kube.emulator.objects[_pods_resource(), NS, pod["metadata"]["name"]] = pod
    other = _worker_pod("another-job", 0, "2026-11-29T23:00:00Z")
    kube.emulator.objects[_pods_resource(), NS, other["metadata"]["name"]] = other
    now = time.time()

    def stamp(offset: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + offset)) + f".{int((now % 1) * 1e6):06d}Z"

    logs = {  # what the kubelet would answer (with timestamps=true); the log grows while the test runs
        f"{request.name}-node-0-0-abcde": [f"{stamp(0)} rank 0 starts", f"{stamp(1)} epoch 1 loss 0.5"],
        f"{request.name}-node-0-1-abcde": [f"{stamp(0)} rank 1 starts"],
        "another-job-node-0-0-abcde": [f"{stamp(0)} not this job"],
    }
    asked: list[dict] = []

    def pod_log(req) -> bytes:
        asked.append(dict(req.params))
        return ("\n".join(logs[req.name]) + "\n").encode()

    kube.emulator[_pods_resource(), kmock.subresource("log")] << pod_log

    def more() -> None:
        time.sleep(0.25)
        logs[f"{request.name}-node-0-0-abcde"].append(f"{stamp(2)} epoch 2 loss 0.25")

    threading.Thread(target=more, daemon=True).start()
    _controller(kube, request.name, COMPLETE, after=0.6)
    lines: list[str] = []
    _run(kube, request, echo=lines.append)
    echoed = [line for line in lines if not line.startswith(("[", "created", "follow", "TrainJob"))]
    assert echoed == ["rank 0 starts", "epoch 1 loss 0.5", "epoch 2 loss 0.25"]
    assert f"[{request.name}] logs of rank 0: pod {request.name}-node-0-0-abcde" in lines
    assert asked[0]["container"] == "node" and asked[0]["tailLines"] == str(tj.FIRST_LOG_LINES)
    assert all("sinceSeconds" in params for params in asked[1:])  # later reads ask only for the recent lines


def test_the_template_defaults_to_the_step_pods_own_and_a_503_on_create_is_retried(kube, tmp_path, monkeypatch):
    pod = _step_pod()
    kube.emulator.objects[_pods_resource(), NS, pod["metadata"]["name"]] = copy.deepcopy(pod)
    ns_file = tmp_path / "namespace"
    ns_file.write_text(NS)
    monkeypatch.setattr(tj, "POD_NAMESPACE_FILE", ns_file)
    monkeypatch.setenv("HOSTNAME", pod["metadata"]["name"])
    kube.emulator["post", kube.trainjobs][:1] << 503  # the first create meets a busy API server
    request = _request()
    _controller(kube, request.name, COMPLETE, after=0.1, jobs=False)
    outcome = tj.run_trainjob(request, custom_api=kube.custom, core_api=kube.core, poll_s=0.05, echo=lambda line: None)
    assert (outcome.namespace, outcome.condition) == (NS, "Complete")
    stored = kube.custom.get_namespaced_custom_object(*TRAINJOBS, request.name)
    assert stored["spec"]["trainer"]["image"] == IMAGE
    assert _methods(kube).count("POST") == 2


def test_a_refused_create_says_what_to_grant(kube):
    (
        kube.emulator["post", kube.trainjobs]
        << 403
        << {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 403,
            "reason": "Forbidden",
            "message": "trainjobs.trainer.kubeflow.org is forbidden",
        }
    )
    with pytest.raises(tj.TrainJobError, match="create/get/delete on trainjobs.trainer.kubeflow.org"):
        _run(kube, _request())
    assert _methods(kube) == ["POST"]  # not retried, nothing to delete (kmock stores refused objects anyway)


def test_no_cluster_configuration_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(tj.TrainJobError, match="no usable Kubernetes configuration"):
        tj.kube_clients()


def test_following_from_another_thread_leaves_the_signal_handlers_alone(kube):
    request = _request()
    previous = signal.getsignal(signal.SIGTERM)
    _controller(kube, request.name, COMPLETE, after=0.1, jobs=False)
    seen: dict = {}

    def follow() -> None:
        seen["outcome"] = _run(
            kube, request, echo=lambda line: seen.setdefault("handler", signal.getsignal(signal.SIGTERM))
        )

    thread = threading.Thread(target=follow)
    thread.start()
    thread.join(10)
    assert seen["outcome"].condition == "Complete"
    assert seen["handler"] is previous and signal.getsignal(signal.SIGTERM) is previous
