"""Submit the pipeline to a Kubeflow Pipelines (KFP v2) API server with ``kfp.Client``.

    python pipeline.py --run --host https://kubeflow.example.com/pipeline --namespace alpr --wait
    python pipeline.py --run --kfp-config kfp.yaml --schedule "0 3 * * 1"      # every Monday 03:00

:func:`submit` compiles the pipeline (with the kfp-kubernetes platform config of :mod:`alpr.kubeflow.platform`), uploads
it -- a new pipeline, or a new version of the existing one, named ``<content hash>-<git revision>``; an identical
version is reused, not uploaded again -- gets or creates the experiment, and creates a run with the run's
parameters (or, with ``schedule``, a recurring run). With ``wait`` it follows the run until it finishes; the result
says whether it succeeded (``ok``), and ``python pipeline.py`` exits non-zero when it did not.

Options (:class:`SubmitOptions`) come from, highest first: command-line flags, environment variables
``ALPR_KFP_<OPTION>`` (``ALPR_KFP_HOST``, ``ALPR_KFP_NAMESPACE``, ``ALPR_KFP_EXPERIMENT``, …; ``KFP_HOST`` also
works), and a YAML file given with ``--kfp-config`` whose ``platform:`` section holds
:class:`alpr.kubeflow.platform.PlatformSettings` (environment ``ALPR_K8S_<FIELD>`` beats the file there too)::

    host: https://kubeflow.example.com/pipeline
    namespace: kubeflow-user-example-com
    experiment: alpr
    service_account: alpr-pipeline
    dex_user: user@example.com
    platform:
      train_gpus: 1
      node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}

Authentication (``auth``; ``auto`` picks the first that applies):

- ``token``: a bearer token, from ``--token`` or the environment ``ALPR_KFP_TOKEN`` / ``KF_PIPELINES_TOKEN``
  (e.g. ``kubectl create token``); never read from the config file.
- ``dex``: multi-user Kubeflow behind Dex: :func:`dex_login` signs in as ``dex_user`` through the login form and
  passes the session cookie (``authservice_session``, or oauth2-proxy's ``oauth2_proxy_kubeflow``) to
  ``kfp.Client(cookies=...)``. The password comes from the environment ``ALPR_DEX_PASSWORD`` or a prompt, never
  from the command line or a file, and is never logged.
- ``in-cluster``: inside a pod, the projected ServiceAccount token for KFP
  (``/var/run/secrets/kubeflow/pipelines/token``, or ``$KF_PIPELINES_SA_TOKEN_PATH``).
- ``kubeconfig``: no host: through the Kubernetes API server's service proxy with the kubeconfig's credentials
  (``kube_context``), to ``ml-pipeline`` in ``kfp_namespace``.
- ``none``: a host without authentication (``kubectl port-forward`` to ``ml-pipeline-ui``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from alpr.kubeflow import platform as kfp_platform
from alpr.kubeflow.auth import IN_CLUSTER_HOST, dex_login, make_client
from alpr.kubeflow.options import (
    DEX_PASSWORD_ENV,
    SubmitError,
    SubmitOptions,
    add_arguments,
    cluster_requested,
    load_options,
    options_from_args,
    read_config_file,
)
from alpr.kubeflow.platform import PlatformSettings

__all__ = [
    "DEX_PASSWORD_ENV",
    "SubmitError",
    "SubmitOptions",
    "add_arguments",
    "cluster_requested",
    "compile_package",
    "dex_login",
    "ensure_pipeline_version",
    "git_revision",
    "load_options",
    "make_client",
    "options_from_args",
    "read_config_file",
    "submit",
    "version_name",
    "wait_for_run",
]

log = logging.getLogger(__name__)

#: Run states after which a run no longer changes (KFP v2beta1 ``RuntimeState``).
FINISHED_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})


# ------------------------------------------------------------------------------------------ submission


def git_revision(path: Path | str = ".") -> str:
    """Short git revision of the checkout holding ``path`` (``-dirty`` appended when tracked files changed);
    ``nogit`` outside a git checkout."""
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
        rev = repo.head.commit.hexsha[:8]
        return f"{rev}-dirty" if repo.is_dirty(untracked_files=False) else rev
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return "nogit"


def version_name(package: Path, revision: str) -> str:
    """Pipeline version name: the first 12 hex digits of the compiled package's SHA-256 and the git revision.

    The same compiled pipeline from the same revision gets the same name, so it is uploaded once.
    """
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]
    return f"{digest}-{revision}"


def compile_package(pipeline_func: Any, package: Path, platform: PlatformSettings) -> Path:
    """Compile ``pipeline_func`` to KFP IR YAML at ``package`` with ``platform``'s kfp-kubernetes config."""
    from kfp import compiler

    compiler.Compiler().compile(
        pipeline_func=kfp_platform.with_platform(pipeline_func, platform), package_path=str(package)
    )
    return package


def _equals(key: str, value: str) -> str:
    import json

    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _api(what: str):
    """Turn the client's API errors into :class:`SubmitError` naming the request ``what``."""
    import kfp_server_api

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except kfp_server_api.ApiException as exc:
            body = (exc.body or "").strip() if isinstance(exc.body, str) else exc.body
            raise SubmitError(f"KFP API refused {what}: HTTP {exc.status} {exc.reason}: {body}") from None
        except (OSError, TimeoutError) as exc:  # urllib3's connection errors are OSErrors
            raise SubmitError(f"KFP API unreachable ({what}): {type(exc).__name__}: {exc}") from None

    return guard()


def ensure_pipeline_version(
    client: Any, package: Path, pipeline_name: str, version: str, namespace: str | None = None, description: str = ""
) -> dict[str, Any]:
    """Upload ``package`` as pipeline ``pipeline_name`` version ``version`` unless that version exists.

    A missing pipeline is created (``upload_pipeline``) and gets the named version next to the initial one KFP
    creates; an existing pipeline gets a new version (``upload_pipeline_version``); an existing version of that
    name (same content, same revision) is reused.

    Returns:
        ``pipeline_id``, ``pipeline_version_id``, ``pipeline_version`` (the name), ``uploaded`` (``"pipeline"``,
        ``"version"`` or ``None`` when reused).

    Raises:
        SubmitError: the server refused a request, or several pipelines have the name.
    """
    with _api(f"listing pipelines named {pipeline_name!r}"):
        found = (
            client.list_pipelines(
                filter=_equals("display_name", pipeline_name), namespace=namespace, page_size=2
            ).pipelines
            or []
        )
    if len(found) > 1:
        raise SubmitError(
            f"{len(found)} pipelines are named {pipeline_name!r}; pass --kfp-config pipeline_name to pick a unique one"
        )
    uploaded = None
    if found:
        pipeline_id = found[0].pipeline_id
        with _api(f"listing versions of pipeline {pipeline_id}"):
            versions = (
                client.list_pipeline_versions(
                    pipeline_id=pipeline_id, filter=_equals("display_name", version), page_size=1
                ).pipeline_versions
                or []
            )
        if versions:
            log.info("pipeline %s version %s exists: reusing it", pipeline_name, version)
            return {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": versions[0].pipeline_version_id,
                "pipeline_version": version,
                "uploaded": None,
            }
    else:
        with _api(f"uploading pipeline {pipeline_name!r}"):
            pipeline_id = client.upload_pipeline(
                str(package), pipeline_name=pipeline_name, description=description, namespace=namespace
            ).pipeline_id
        uploaded = "pipeline"
    with _api(f"uploading version {version!r} of pipeline {pipeline_name!r}"):
        created = client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id, description=description or None
        )
    return {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": created.pipeline_version_id,
        "pipeline_version": version,
        "uploaded": uploaded or "version",
    }


def wait_for_run(
    client: Any, run_id: str, *, timeout: float, poll_interval: float, sleep: Callable[[float], None] = time.sleep
) -> Any:
    """Poll ``client.get_run`` until the run finishes (:data:`FINISHED_STATES`); log each new state.

    Transient API failures (HTTP 5xx, connection errors) are retried (tenacity, 5 tries, exponential back-off).

    Returns:
        The finished run (``kfp_server_api.V2beta1Run``).

    Raises:
        SubmitError: ``timeout`` seconds passed first (the run goes on), or the API keeps failing.
    """
    import kfp_server_api
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, OSError) or (isinstance(exc, kfp_server_api.ApiException) and (exc.status or 0) >= 500)

    get_run = retry(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(5),
        reraise=True,
        wait=wait_exponential(multiplier=min(poll_interval, 2.0), max=60),
        sleep=sleep,
    )(client.get_run)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        with _api(f"getting run {run_id}"):
            run = get_run(run_id)
        state = str(run.state or "PENDING").upper()
        if state != last:
            log.info("run %s: %s", run_id, state)
            last = state
        if state in FINISHED_STATES:
            return run
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SubmitError(f"run {run_id} still {state} after {timeout:.0f} s (--timeout); it goes on in KFP")
        sleep(min(poll_interval, remaining))


def submit(
    pipeline_func: Any,
    arguments: Mapping[str, Any],
    options: SubmitOptions,
    platform: PlatformSettings | None = None,
    *,
    client: Any = None,
    source_dir: Path | str = ".",
    prompt: Callable[[str], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Compile, upload (pipeline or version), get or create the experiment, and run or schedule.

    Args:
        pipeline_func: the ``@dsl.pipeline`` function.
        arguments: the run's parameter values.
        options: where and how (:class:`SubmitOptions`).
        platform: kfp-kubernetes values compiled in (default: from the environment).
        client: a ``kfp.Client`` to use instead of :func:`make_client`'s.
        source_dir: a path in the git checkout whose revision names the version.
        prompt: Dex password prompt (see :func:`make_client`).
        sleep: the sleep used while waiting (tests pass a fast one).

    Returns:
        ``pipeline``, ``pipeline_id``, ``pipeline_version``, ``pipeline_version_id``, ``uploaded``, ``experiment``,
        ``experiment_id``, then ``run_id``, ``run_url`` (and with ``wait``: ``state``, ``error``) or
        ``recurring_run_id``, ``schedule``; ``ok``: False when a waited-for run did not succeed.

    Raises:
        SubmitError: bad options, a failed login, the server refused a request, or the wait timed out.
    """
    if options.wait and options.schedule:
        raise SubmitError("--wait follows one run; it cannot be combined with --schedule")
    platform = platform or PlatformSettings()
    with tempfile.TemporaryDirectory(prefix="alpr-kfp-") as tmp:
        package = compile_package(pipeline_func, Path(tmp) / "pipeline.yaml", platform)
        import yaml

        spec = next(yaml.safe_load_all(package.read_text()))  # the pipeline spec; the platform spec follows
        name = options.pipeline_name or spec["pipelineInfo"]["name"]
        version = version_name(package, git_revision(source_dir))
        client = client or make_client(options, prompt=prompt)
        result: dict[str, Any] = {"pipeline": name}
        with contextlib.redirect_stdout(sys.stderr):  # kfp prints its links: keep stdout for the result
            result.update(
                ensure_pipeline_version(
                    client,
                    package,
                    name,
                    version,
                    options.namespace,
                    description=spec["pipelineInfo"].get("description", ""),
                )
            )
            with _api(f"getting or creating experiment {options.experiment!r}"):
                experiment = client.create_experiment(options.experiment, namespace=options.namespace)
            result.update(experiment=options.experiment, experiment_id=experiment.experiment_id)
            common = dict(
                experiment_id=experiment.experiment_id,
                params=dict(arguments),
                pipeline_id=result["pipeline_id"],
                version_id=result["pipeline_version_id"],
                pipeline_root=options.pipeline_root,
                enable_caching=options.enable_caching,
                service_account=options.service_account or None,
            )
            if options.schedule:
                schedule_name = options.schedule_name or f"{name}-recurring"
                with _api(f"creating recurring run {schedule_name!r}"):
                    rec = client.create_recurring_run(
                        job_name=schedule_name,
                        cron_expression=options.schedule,
                        max_concurrency=1,
                        no_catchup=True,
                        **common,
                    )
                result.update(recurring_run_id=rec.recurring_run_id, schedule=options.schedule, ok=True)
                return result
            run_name = options.run_name or f"{name}-{time.strftime('%Y-%m-%d-%H-%M-%S', time.gmtime())}"
            with _api(f"creating run {run_name!r}"):
                run = client.run_pipeline(job_name=run_name, **common)
        ui = options.ui_url or options.host or IN_CLUSTER_HOST
        result.update(run_id=run.run_id, run_name=run_name, run_url=f"{ui}/#/runs/details/{run.run_id}", ok=True)
    if options.wait:
        final = wait_for_run(
            client, run.run_id, timeout=options.timeout, poll_interval=options.poll_interval, sleep=sleep
        )
        state = str(final.state).upper()
        result.update(state=state, ok=state == "SUCCEEDED")
        if final.error is not None and state != "SUCCEEDED":
            err = final.error
            result["error"] = getattr(err, "message", None) or str(err)
    return result
