"""alpr.kubeflow.local_runner without a container engine: the runner's name, the folders a task container needs,
and the ``containers.run`` arguments (the run itself: test_pipeline_container.py)."""

from __future__ import annotations

import pytest
from docker.types import Mount
from kfp import local

from alpr.kubeflow import local_runner
from alpr.settings import Settings


def test_runner_kind(monkeypatch):
    monkeypatch.delenv(local_runner.RUNNER_ENV, raising=False)
    assert local_runner.runner_kind() == "subprocess"
    assert local_runner.runner_kind(" Docker ") == "docker"
    monkeypatch.setenv(local_runner.RUNNER_ENV, "docker")
    assert local_runner.runner_kind() == "docker"
    with pytest.raises(ValueError, match="ALPR_LOCAL_RUNNER='k8s': the local runner is one of subprocess, docker"):
        local_runner.runner_kind("k8s")


def test_make_runner_default_is_the_subprocess_runner(tmp_path, monkeypatch):
    monkeypatch.delenv(local_runner.RUNNER_ENV, raising=False)
    runner = local_runner.make_runner(Settings(workspace=tmp_path))
    assert isinstance(runner, local.SubprocessRunner) and runner.use_venv is False


def test_local_paths_cover_every_local_setting_without_nesting(tmp_path):
    ws = tmp_path / "ws"
    outside = tmp_path / "elsewhere"
    settings = Settings(
        workspace=ws,
        db_url=f"sqlite:///{outside / 'db' / 'metadata.db'}",
        storage_uri="gs://bucket/alpr",  # a URL: nothing to mount
        dvc_remote=str(outside / "remote"),
    )
    paths = local_runner.local_paths(settings)
    # the workspace holds the cache and the dataset repository; the DB folder and the remote lie outside it
    assert paths == sorted([ws, outside / "db", outside / "remote"])


def test_docker_run_args(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    settings = Settings(workspace=ws)
    with pytest.raises(ValueError, match="bootstrap the workspace first"):
        local_runner.docker_run_args(settings)
    ws.mkdir()
    monkeypatch.setenv("ALPR_DB_PASSWORD", "s3cret")
    args = local_runner.docker_run_args(settings)
    assert args["mounts"] == [Mount(target=str(ws), source=str(ws), type="bind")]
    assert args["environment"]["ALPR_WORKSPACE"] == str(ws)
    assert args["environment"]["ALPR_DB_URL"] == f"sqlite:///{ws / 'metadata.db'}"
    assert args["environment"]["ALPR_DB_PASSWORD"] == "s3cret"
    assert args["network_mode"] == "host" and args["init"] is True
    assert "user" not in args and "entrypoint" not in args  # the image's user; Docker needs no settling time
    podman = local_runner.docker_run_args(settings, user="1000:1000", podman=True)
    assert podman["user"] == "1000:1000"
    assert podman["entrypoint"][:2] == ["/bin/sh", "-c"] and "exit $code" in podman["entrypoint"][2]
    # kfp.local accepts them (it refuses unknown or reserved `docker run` arguments)
    assert isinstance(local.DockerRunner(**podman), local.DockerRunner)


def test_the_tasks_get_the_runs_name_when_it_is_set(tmp_path, monkeypatch):
    """pipelines.run sets ALPR_RUN_NAME before it makes the runner: a task in a container knows its run."""
    settings = Settings(workspace=tmp_path / "ws")
    monkeypatch.delenv("ALPR_RUN_NAME", raising=False)
    assert "ALPR_RUN_NAME" not in local_runner.task_environment(settings)
    monkeypatch.setenv("ALPR_RUN_NAME", "alpr-train-20260101-000000-abcdef")
    assert local_runner.task_environment(settings)["ALPR_RUN_NAME"] == "alpr-train-20260101-000000-abcdef"
