"""The whole pipeline on tiny data with every task in the components image: kfp.local.DockerRunner through
the Docker API of ``podman system service`` (containers/run_pipeline.py, alpr.kubeflow.local_runner).

The same tiny run as tests/integration/test_pipeline.py (24 synthetic images, 2 epochs at 160 px), but each of
Record, Tune, Train, Evaluate, Test and Deploy runs as uid 10001 in a container of the image, with the workspace
mounted at the same path; the results land in the workspace on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from container_tools import IMAGE_UID, ROOT

from alpr.metadata import MetadataStore

#: The tiny pipeline run (the flags of tests/integration/test_pipeline.py).
TINY_RUN = [
    "--bootstrap-images", "24", "--epochs", "2", "--input-size", "160", "--batch-size", "4", "--val-interval", "1",
    "--train-fraction", "0.6", "--val-fraction", "0.2", "--test-fraction", "0.2",
]  # fmt: skip
#: Seconds the whole in-container run may take on 2 busy cores (measured: docs/containers.md).
RUN_TIMEOUT_S = 1800


def test_pipeline_runs_every_task_in_the_components_image(images, docker_host, shared_tmp):
    ws = shared_tmp / "ws"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALPR_")},
        "DOCKER_HOST": docker_host,
        "ALPR_COMPONENT_IMAGE": images["components"],
    }
    cmd = [sys.executable, str(ROOT / "containers" / "run_pipeline.py"), "--workspace", str(ws), "--chown", *TINY_RUN]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S, cwd=shared_tmp)
    log = proc.stdout + proc.stderr
    (shared_tmp / "run.log").write_text(log)
    print(log[-6000:])
    assert proc.returncode == 0, log[-8000:]
    # Every task ran in the image (kfp.local prints the image it found before each container): Record, Train,
    # Evaluate, Test, Deploy. Tune is off, so the local graph leaves it out; locally Finish is pipelines.run's own call.
    assert log.count(f"Found image '{images['components']}'") == 5, log[-4000:]
    summary, _ = json.JSONDecoder().raw_decode(log[log.index("{", log.index("=== ALPR pipeline finished")) :])
    assert summary["model_uri"] and summary["deployment"]["action"] == "deployed"
    assert set(summary["val"]) and set(summary["test"])
    # The results, written by the tasks as uid 10001, are in the host's workspace.
    store = MetadataStore(f"sqlite:///{ws / 'metadata.db'}")
    model = store.latest_selected_model()
    lineage = store.model_lineage(model["id"])
    assert store.get_run(lineage["run"]["name"])["status"] == "succeeded"
    assert {e["split"] for e in store.evaluations(model["id"])} == {"val", "test"}
    reports = list((ws / "pipeline_root").glob("*/test/report_files/index.html"))
    assert len(reports) == 1 and reports[0].stat().st_uid == IMAGE_UID
