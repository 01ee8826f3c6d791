"""The runner of a local pipeline run: in this Python environment, or every task in the components image.

``kfp.local`` runs a pipeline without a cluster with one of two runners:

- ``subprocess`` (the default): :class:`kfp.local.SubprocessRunner` runs each task's function in this Python
  environment;
- ``docker``: :class:`kfp.local.DockerRunner` runs each task in a container of its ``base_image`` -- the components
  image (``ALPR_COMPONENT_IMAGE``) -- through a Docker API: Docker's, or the one ``podman system service`` serves
  (``DOCKER_HOST=unix://…``; docs/containers.md). That is what a cluster does, less Kubernetes.

A task in a container sees only what is mounted into it. :func:`docker_runner` therefore mounts every local path
of the settings (the workspace, the SQLite database, the storage folder, the dataset repository, the DVC remote,
the cache) at the same path, passes the ``ALPR_*`` variables (and ``ALPR_DB_PASSWORD`` and the run's
``ALPR_RUN_NAME`` when they are set), and uses
the host's network, so that a metadata database on 127.0.0.1 answers inside the task as it does outside. The tasks
run as the image's user (uid 10001) unless ``user`` says otherwise: the workspace must be writable by it.

``ALPR_LOCAL_RUNNER`` (``subprocess`` or ``docker``) chooses the runner of :func:`make_runner`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from alpr.kubeflow.platform import RUN_NAME_ENV
from alpr.settings import Settings

#: The environment variable that chooses the local runner, and its values (the first is the default).
RUNNER_ENV: Final = "ALPR_LOCAL_RUNNER"
RUNNERS: Final = ("subprocess", "docker")
#: Where the database password comes from (see :mod:`alpr.settings`); passed to the tasks when it is set.
DB_PASSWORD_ENV: Final = "ALPR_DB_PASSWORD"
#: Seconds a task's container stays after its command under podman's Docker API. kfp.local starts each task with
#: ``auto_remove`` and then asks for its logs; a task that ends before that question is already gone, and podman
#: 4.3 answers 500 "no such container" where Docker answers 404 (which kfp.local expects), failing the run.
PODMAN_SETTLE_S: Final = 2


def runner_kind(value: str | None = None) -> str:
    """The runner named by ``value`` (default: ``$ALPR_LOCAL_RUNNER``, else ``subprocess``).

    Raises:
        ValueError: the name is not one of :data:`RUNNERS`.
    """
    kind = (value if value is not None else os.environ.get(RUNNER_ENV, "")).strip().lower() or RUNNERS[0]
    if kind not in RUNNERS:
        raise ValueError(f"{RUNNER_ENV}={kind!r}: the local runner is one of {', '.join(RUNNERS)}")
    return kind


def local_paths(settings: Settings) -> list[Path]:
    """The host folders a task needs (absolute, nested ones dropped): the workspace and every setting that is a
    local path rather than a URL (the SQLite database's folder, storage, dataset repository, DVC remote, cache)."""
    candidates = [settings.workspace, settings.cache_dir]
    if settings.db_url.startswith("sqlite:///"):
        candidates.append(Path(settings.db_url.removeprefix("sqlite:///")).parent)
    for value in (settings.storage_uri, settings.dvc_remote):
        if "://" not in value:
            candidates.append(Path(value))
    if settings.is_local_dataset_repo:
        candidates.append(Path(settings.dataset_repo))
    paths = sorted({Path(os.path.abspath(p)) for p in candidates if p is not None})
    return [p for p in paths if not any(q != p and q in p.parents for q in paths)]


def task_environment(settings: Settings) -> dict[str, str]:
    """The variables every task container gets: the settings' ``ALPR_*`` values, the DB password and the run's
    name (:data:`~alpr.kubeflow.platform.RUN_NAME_ENV`, set by :mod:`pipelines.run`) when set. Read when the
    runner is made: make it once the run's name is set."""
    env = dict(settings.environ())
    for name in (DB_PASSWORD_ENV, RUN_NAME_ENV):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def is_podman(client=None) -> bool:
    """Whether the Docker API at ``DOCKER_HOST`` (or ``client``'s) is podman's (``podman system service``)."""
    import docker

    client = client or docker.from_env()
    components = client.version().get("Components") or []
    return any("podman" in str(c.get("Name", "")).lower() for c in components)


def docker_run_args(
    settings: Settings, *, user: str | None = None, network_mode: str = "host", podman: bool = False
) -> dict[str, Any]:
    """The ``docker`` SDK ``containers.run`` arguments of :func:`docker_runner` (mounts, environment, network,
    init, user; under ``podman``, an entry point that keeps the container :data:`PODMAN_SETTLE_S` seconds after
    the task's command, keeping its exit code), for a look before running.

    Raises:
        ValueError: a local path of the settings does not exist (bootstrap the workspace first).
    """
    from docker.types import Mount

    paths = local_paths(settings)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ValueError(f"docker runner: these local paths do not exist (bootstrap the workspace first): {missing}")
    args: dict[str, Any] = {
        "mounts": [Mount(target=str(p), source=str(p), type="bind") for p in paths],
        "environment": task_environment(settings),
        "network_mode": network_mode,
        "init": True,
    }
    if user is not None:
        args["user"] = user
    if podman:
        script = f'"$@"; code=$?; sleep {PODMAN_SETTLE_S}; exit $code'
        args["entrypoint"] = ["/bin/sh", "-c", script, "kfp-task"]
    return args


def docker_runner(settings: Settings, *, user: str | None = None, network_mode: str = "host"):
    """A :class:`kfp.local.DockerRunner` that runs each task in its image with the settings' paths mounted.

    Args:
        settings: the backends the tasks use; their local paths must exist.
        user: ``uid[:gid]`` to run the tasks as; None keeps the image's user (10001 in the project's images).
        network_mode: ``host`` (default: 127.0.0.1 inside a task is the host) or a Docker network mode.

    Raises:
        ImportError: the ``docker`` Python package is missing (``pip install docker``; the test extra has it).
        ValueError: a local path of the settings does not exist.
        docker.errors.DockerException: no Docker API answers at ``DOCKER_HOST``.
    """
    from kfp import local

    args = docker_run_args(settings, user=user, network_mode=network_mode, podman=is_podman())
    return local.DockerRunner(**args)


def make_runner(settings: Settings, kind: str | None = None):
    """The runner for ``local.init``: :class:`kfp.local.SubprocessRunner` (in this environment) or
    :func:`docker_runner`, as ``kind`` or ``$ALPR_LOCAL_RUNNER`` says (see :func:`runner_kind`)."""
    from kfp import local

    if runner_kind(kind) == "docker":
        return docker_runner(settings)
    return local.SubprocessRunner(use_venv=False)
