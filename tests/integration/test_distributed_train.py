"""The Train step on a cluster with ``train_workers`` > 1, end to end without one: the step, in its "pod", creates a
Kubeflow Trainer TrainJob through the Kubernetes API (kmock, in memory); a thread plays Trainer's controller and its
pods: it starts each node's command exactly as the TrainJob gives it (the torch plugin's ``PET_*`` environment,
the literal env the TrainJob carries), then sets the TrainJob's condition from the processes' exit. The step then
collects the checkpoints the ranks wrote to the shared work dir, as on a cluster with a ReadWriteMany PVC."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kube_emulator import serve_kubernetes, write_kubeconfig
from tiny_models import TINY_HP

from alpr.kubeflow import trainjob as tj
from alpr.model.distributed import TrainScale
from alpr.settings import Settings
from alpr.steps.lineage import DatasetLineage
from alpr.steps.train import train_step

pytestmark = pytest.mark.slow

NS = "kubeflow-user"
POD = "alpr-pipeline-abcde-system-container-impl-42"
TRAINJOBS = ("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs")
HP = {**TINY_HP, "weight_decay": 0.05, "seed": 0, "plate_input_size": 0, "plate_epochs": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step_pod(workspace) -> dict:
    """The Train step's own pod, as the platform configures it (only what the TrainJob takes over matters)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS, "labels": {"pipeline/runid": "run-7"}},
        "spec": {
            "serviceAccountName": "pipeline-runner",
            "containers": [
                {
                    "name": "main",
                    "image": "ghcr.io/alpr-kubeflow/alpr-components:test",
                    "env": [
                        {"name": "ALPR_WORKSPACE", "value": str(workspace)},
                        {
                            "name": "ALPR_RUN_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['pipeline/runid']"}},
                        },
                        {"name": "KFP_POD_NAME", "value": POD},
                    ],
                    "volumeMounts": [{"name": "workspace", "mountPath": "/mnt/alpr"}],
                }
            ],
            "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": "alpr-workspace"}}],
        },
    }


def _trainer(api, seen: dict) -> threading.Thread:
    """Play Kubeflow Trainer: run the created TrainJob's nodes as local processes, then report its condition."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while True:
            items = api.custom.list_namespaced_custom_object(*TRAINJOBS).get("items") or []
            if items:
                break
            assert time.monotonic() < deadline, "no TrainJob was created"
            time.sleep(0.1)
        job = items[0]
        seen["job"] = job
        trainer = job["spec"]["trainer"]
        nodes, procs = trainer["numNodes"], trainer["numProcPerNode"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.update({e["name"]: e["value"] for e in trainer.get("env", []) if "value" in e})
        rendezvous = {"PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": str(procs), "PET_MASTER_ADDR": "127.0.0.1"}
        rendezvous["PET_MASTER_PORT"] = str(_free_port())
        pods = [
            subprocess.Popen(trainer["command"], env={**env, **rendezvous, "PET_NODE_RANK": str(rank)})
            for rank in range(nodes)
        ]
        codes = [p.wait(timeout=900) for p in pods]
        seen["exit_codes"] = codes
        ok = all(c == 0 for c in codes)
        condition = {
            "type": "Complete" if ok else "Failed",
            "status": "True",
            "reason": "AllJobsCompleted" if ok else "FailedJobs",
            "message": "jobset completed successfully" if ok else f"node exit codes {codes}",
            "lastTransitionTime": "2026-11-30T00:00:00Z",
        }
        api.custom.patch_namespaced_custom_object_status(
            *TRAINJOBS, job["metadata"]["name"], {"status": {"conditions": [condition]}}
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def record_output(tiny_coco, tmp_path):
    """Record's output folder: the tiny training version and its lineage, as the step pod downloads it."""
    root = tmp_path / "artifact" / "dataset"
    shutil.copytree(tiny_coco, root)
    DatasetLineage(
        annotation_version="annotations-v1",
        training_version="training-v1-tiny",
        git_rev="0" * 40,
        dataset_repo=str(tmp_path / "repo"),
        counts={"splits": {s: {"images": 1} for s in ("train", "val", "test")}, "classes": {}},
        created=True,
        run_name="run-7",
    ).write(root)
    return root


def test_two_workers_train_in_a_trainjob_and_the_step_collects_their_checkpoints(
    record_output, tmp_path, monkeypatch, capsys
):
    workspace = tmp_path / "ws"
    with serve_kubernetes({"trainer.kubeflow.org/v1alpha1/trainjobs": "TrainJob"}) as api:
        api.core.create_namespaced_pod(NS, _step_pod(workspace))
        namespace_file = tmp_path / "namespace"
        namespace_file.write_text(NS)
        monkeypatch.setattr(tj, "POD_NAMESPACE_FILE", namespace_file)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", api.url, NS)))
        monkeypatch.setenv("HOSTNAME", POD)
        # as in a pod, where the launcher is the TrainJob (but reaching the API through the kubeconfig)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("ALPR_TRAIN_LAUNCHER", "trainjob")
        seen: dict = {}
        trainer = _trainer(api, seen)
        lineage = train_step(
            Settings(workspace=workspace),
            data_root=record_output,
            out_dir=tmp_path / "model",
            run_name="run-7",
            hp=HP,
            config="rtmdet_tiny_alpr.py",
            num_workers=0,
            scale=TrainScale(workers=2),
        )
        trainer.join(timeout=30)
        jobs = api.custom.list_namespaced_custom_object(*TRAINJOBS)["items"]
    out = capsys.readouterr().out
    # one TrainJob: two CPU nodes of one process each, the step's image, the command on the shared config
    assert len(jobs) == 1 and seen["exit_codes"] == [0, 0]
    spec = jobs[0]["spec"]
    assert spec["runtimeRef"]["name"] == "torch-distributed"
    assert (spec["trainer"]["numNodes"], spec["trainer"]["numProcPerNode"]) == (2, 1)
    assert spec["trainer"]["image"] == "ghcr.io/alpr-kubeflow/alpr-components:test"
    command = spec["trainer"]["command"]
    assert command[1:4] == ["-m", "torch.distributed.run", "--max-restarts=1"] and "--standalone" not in command
    config = command[-1]
    assert config.startswith(str(workspace)) and config.endswith("distributed_config.py")
    env = {e["name"]: e.get("value") for e in spec["trainer"]["env"]}
    assert env["ALPR_RUN_NAME"] == "run-7" and env["ALPR_WORKSPACE"] == str(workspace) and "KFP_POD_NAME" not in env
    # the ranks read the training version from the copy on the shared workspace, not the step's artifact
    text = Path(config).read_text()
    flat = "".join(text.split())  # the dump wraps long values
    assert flat.count(f"data_root='{workspace}/cache/train/run-7.data/'") == 3  # train, val, test loaders
    assert str(record_output) not in flat
    # the step collected and published what rank 0 wrote
    assert {"epoch_1.pth", "epoch_2.pth"} <= set(lineage.candidates)
    assert (
        "launcher = 'pytorch'" in text and "launcher = 'pytorch'" not in (tmp_path / "model" / "config.py").read_text()
    )
    assert json.loads((tmp_path / "model" / "lineage.json").read_text())["candidates"] == lineage.candidates
    assert "TrainJob" in out and "kubectl" in out
