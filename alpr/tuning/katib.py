"""The Katib Experiment (kubeflow.org/v1beta1): render it, submit it, follow it, read its best trial.

The Experiment tunes the hyperparameters of :func:`alpr.tuning.space.default_space` for the selection metric
(``eir``, maximize; ``mAP`` and ``loss`` recorded beside it):

- ``algorithm``: ``random``, ``tpe`` or ``bayesianoptimization`` (``--tune-algorithm``), seeded;
- ``parallelTrialCount`` / ``maxTrialCount`` / ``maxFailedTrialCount`` from the tuning options;
- ``earlyStopping``: ``medianstop`` (``min_trials_required``, ``start_step``);
- ``trialTemplate``: a ``batch/v1`` Job whose container ``training-container`` (the primary container) runs the
  components image's ``python -m alpr.tuning.trial`` with ``--<name>=${trialParameters.<name>}`` for every searched
  parameter and the fixed ones (epochs, validation interval, seed, config, data) as plain arguments; the backend
  settings come from a ConfigMap and a Secret of the namespace (``envFrom``), never from the Experiment itself;
- distributed trials (``trial_workers`` > 1 or ``trial_gpus_per_worker`` > 1, :class:`~alpr.tuning.options.TuningOptions`):
  the ``trialSpec`` is a Kubeflow Trainer ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) whose nodes run
  ``torchrun --max-restarts=0 -m alpr.tuning.trial`` with the same arguments; ``primaryContainerName`` is the
  trainer's container ``node``, ``primaryPodLabels`` select the rank-0 pod only (the metrics collector is injected
  there, and only rank 0 prints metrics), and ``successCondition`` / ``failureCondition`` read the TrainJob's
  ``Complete`` / ``Failed`` conditions. The ConfigMap's keys reach the nodes one by one (no ``envFrom`` in a
  TrainJob). On the cluster: Kubeflow Trainer (v2.3 serves this schema) with its ``torch-distributed``
  ClusterTrainingRuntime, Katib >= 0.19 with ``TrainJob.v1alpha1.trainer.kubeflow.org`` in its config's
  ``controller.trialResources`` (the default of Katib 0.19's manifests; add it where the config was customised,
  and give ``katib-controller`` RBAC on ``trainjobs``, which 0.19's manifests do), and Kubernetes >= 1.28 (the
  pods' ``batch.kubernetes.io/job-completion-index`` label the rank-0 selection needs). Katib 0.19 honours
  ``primaryPodLabels`` for any trial kind: its pod webhook injects the collector only into pods whose labels match
  them, after following the pod's owners (Job, JobSet) up to the trial's TrainJob;
- ``metricsCollectorSpec``: ``StdOut`` with the filter :data:`alpr.tuning.collector.METRICS_FILTER`; the entry point
  prints exactly that format after every validation, which also feeds median stopping.

``katib/experiment.yaml`` is this module's rendering with the default options (``python -m alpr.tuning.katib render
-o katib/experiment.yaml``); a test keeps it in step. On a cluster, ``python pipeline.py --katib`` renders it with
the run's options, creates it with the kubernetes client's ``CustomObjectsApi`` (the kubeflow-katib SDK pins a
protobuf that conflicts with kfp and kserve), follows its conditions until ``Succeeded`` or ``Failed`` (or a
timeout) and reads ``status.currentOptimalTrial``. Requires Katib >= 0.17 (``feasibleSpace.distribution``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alpr.defaults import DEFAULT_COMPONENT_IMAGE
from alpr.kubeflow.platform import CONFIG_MAP_KEYS, current_settings
from alpr.kubeflow.trainjob import (
    COMPLETION_INDEX_LABEL,
    REPLICATED_JOB_LABEL,
    TRAINER_CONTAINER,
    PodTemplate,
    TrainJobRequest,
    build_trainjob,
)
from alpr.tuning.collector import METRICS_FILTER
from alpr.tuning.options import ALGORITHMS, TuningOptions
from alpr.tuning.space import SearchSpace, default_space
from alpr.tuning.trial import trial_argv

log = logging.getLogger(__name__)

GROUP = "kubeflow.org"
VERSION = "v1beta1"
PLURAL = "experiments"
TRIALS = "trials"
#: The trial Job's container that trains (Katib's ``primaryContainerName``).
PRIMARY_CONTAINER = "training-container"
#: A TrainJob trial's container that trains: the trainer node's (Kubeflow Trainer v2.3.0 ``constants.Node``; the
#: replicated Job that runs it has the same name).
TRAINJOB_CONTAINER = TRAINER_CONTAINER
#: The labels of a TrainJob trial's rank-0 pod (Katib's ``primaryPodLabels``: only it gets the metrics collector).
#: JobSet labels every pod with its replicated Job's name; the indexed Job's controller labels every pod with its
#: completion index (Kubernetes >= 1.28, ``PodIndexLabel``), which Trainer's torch plugin passes to torchrun as the
#: node rank (``PET_NODE_RANK``). Katib v0.19's defaults for TrainJob trials are the same.
TRAINJOB_PRIMARY_POD_LABELS = {REPLICATED_JOB_LABEL: TRAINER_CONTAINER, COMPLETION_INDEX_LABEL: "0"}
#: When Katib counts a TrainJob trial as succeeded / failed: GJSON on the TrainJob's conditions (Trainer's
#: ``Complete`` / ``Failed`` condition types; Katib v0.19's defaults for TrainJob trials).
TRAINJOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
TRAINJOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
#: The command of a TrainJob trial's nodes, before the trial's arguments: torchrun reads the node count, rank,
#: processes per node and rendezvous address from the ``PET_*`` variables Trainer's torch plugin sets; a failed
#: process fails the trial (no restarts: Katib retries nothing either).
TRAINJOB_TRIAL_COMMAND = ("torchrun", "--max-restarts=0", "-m", "alpr.tuning.trial")
#: Label Katib puts on the trials of an Experiment.
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"


class KatibError(RuntimeError):
    """The cluster refused or lost the Experiment; the message says what to do."""


class ExperimentFailed(KatibError):
    """The Experiment ended in its ``Failed`` condition (the message carries Katib's reason and message)."""


class ExperimentTimeout(KatibError, TimeoutError):
    """The Experiment did not finish in time; it keeps running on the cluster (the message says how to stop it)."""


# --------------------------------------------------------------------------------------------------- render
def _trial_parameter(name: str) -> str:
    """Katib trial parameter name of search-space parameter ``name`` (camelCase: ``input_size`` → ``inputSize``)."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _backend_env(platform) -> list[dict]:
    """The DB URL and password of a trial, from the DB Secret (by name and key, never by value)."""
    return [
        {
            "name": "ALPR_DB_URL",
            "valueFrom": {"secretKeyRef": {"name": platform.db_secret, "key": platform.db_url_key}},
        },
        {
            "name": "ALPR_DB_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": platform.db_secret, "key": platform.db_password_key, "optional": True}
            },
        },
    ]


def _config_map_env(platform) -> list[dict]:
    """The ConfigMap's backend URLs one variable per key (:data:`alpr.kubeflow.platform.CONFIG_MAP_KEYS`, each
    optional): for a TrainJob trial, whose container patches have ``env`` but no ``envFrom``."""
    if not platform.config_map:
        return []
    return [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": platform.config_map, "key": key, "optional": True}}}
        for key in CONFIG_MAP_KEYS
    ]


def _secret_volumes(platform) -> tuple[list[dict], list[dict], list[dict]]:
    """``(volumes, volume mounts, env)`` of the GCS key and the dataset repository's SSH key: optional Secret
    volumes, and the variables that point at them."""
    volumes, mounts, env = [], [], []
    if platform.gcs_key_secret:
        volumes.append({"name": "gcs-key", "secret": {"secretName": platform.gcs_key_secret, "optional": True}})
        mounts.append({"name": "gcs-key", "mountPath": platform.gcs_key_mount, "readOnly": True})
        env.append(
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{platform.gcs_key_mount}/{platform.gcs_key_file}"}
        )
    if platform.git_secret:
        volumes.append({"name": "git-ssh", "secret": {"secretName": platform.git_secret, "optional": True}})
        mounts.append({"name": "git-ssh", "mountPath": platform.git_secret_mount, "readOnly": True})
        env.append(
            {
                "name": "GIT_SSH_COMMAND",
                "value": f"ssh -i {platform.git_secret_mount}/ssh-privatekey -o IdentitiesOnly=yes "
                f"-o UserKnownHostsFile={platform.git_secret_mount}/known_hosts",
            }
        )
    return volumes, mounts, env


def _pod_spec(options: TuningOptions, container: dict, platform) -> dict:
    """The trial pod: the backends reach it as they reach the pipeline's tasks (:mod:`alpr.kubeflow.platform`): the DB
    URL and password from the DB Secret, the backend URLs from the ConfigMap, the GCS key and the dataset
    repository's SSH key as optional Secret volumes -- by name, never by value."""
    env = container.setdefault("env", [])
    env += _backend_env(platform)
    if platform.config_map:
        container["envFrom"] = [{"configMapRef": {"name": platform.config_map, "optional": True}}]
    volumes, mounts, secret_env = _secret_volumes(platform)
    env += secret_env
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        pod["volumes"] = volumes
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if platform.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in platform.image_pull_secrets]
    if options.worker_gpus:
        container["resources"]["limits"][platform.accelerator_type] = options.worker_gpus
        if platform.node_selector:
            pod["nodeSelector"] = dict(platform.node_selector)
        if platform.tolerations:
            pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in platform.tolerations]
    return pod


#: Annotations of a trial's pods: no Istio sidecar (a sidecar that never exits would keep a finished trial running).
_TRIAL_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}


def _job_trial(options: TuningOptions, argv: list[str], platform) -> dict:
    """A one-pod trial: a ``batch/v1`` Job (no retries) whose container :data:`PRIMARY_CONTAINER` runs
    ``python -m alpr.tuning.trial <argv>``."""
    container: dict[str, Any] = {
        "name": PRIMARY_CONTAINER,
        "image": options.image,
        "command": ["python", "-m", "alpr.tuning.trial"],
        "args": argv,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": {
            "requests": {"cpu": options.cpu, "memory": options.memory},
            "limits": {"cpu": options.cpu, "memory": options.memory},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": dict(_TRIAL_POD_ANNOTATIONS)},
                "spec": _pod_spec(options, container, platform),
            },
        },
    }


def _trainjob_trial(options: TuningOptions, argv: list[str], platform) -> dict:
    """A distributed trial: a Kubeflow Trainer ``TrainJob`` (:func:`alpr.kubeflow.trainjob.build_trainjob`, on its
    default runtime, ``torch-distributed`` unless ``$ALPR_TRAIN_RUNTIME`` names another) of
    ``options.trial_workers`` nodes with ``options.worker_gpus`` GPUs each (one process per GPU; one per node on the
    CPU), every node running ``torchrun --max-restarts=0 -m alpr.tuning.trial <argv>``
    (:data:`TRAINJOB_TRIAL_COMMAND`), with the one-pod trial's CPU and memory per node. The backends reach the nodes
    as they reach a one-pod trial, with one difference: the ConfigMap's keys come one by one (``configMapKeyRef``),
    since a TrainJob's container patches carry ``env`` but no ``envFrom``. No ``metadata.name``: Katib names the
    TrainJob after the trial, ``<Experiment>-<8 characters>`` (at most 49 characters, so the rank pods' host names
    ``<name>-node-0-<rank>`` stay DNS labels; the request is checked with the Experiment's name)."""
    volumes, mounts, secret_env = _secret_volumes(platform)
    template = PodTemplate(
        image=options.image,
        env=(*_backend_env(platform), *_config_map_env(platform), *secret_env),
        volumes=tuple(volumes),
        volume_mounts=tuple(mounts),
        service_account=options.service_account or "",
        image_pull_secrets=tuple(platform.image_pull_secrets),
    )
    gpus = options.worker_gpus
    request = TrainJobRequest(
        name=options.name,
        command=(*TRAINJOB_TRIAL_COMMAND, *argv),
        workers=options.trial_workers,
        gpus_per_worker=gpus,
        accelerator=platform.accelerator_type,
        cpu_request=options.cpu,
        cpu_limit=options.cpu,
        memory_request=options.memory,
        memory_limit=options.memory,
        node_selector=dict(platform.node_selector) if gpus else {},
        tolerations=tuple(t.model_dump(by_alias=True, exclude_none=True) for t in platform.tolerations) if gpus else (),
    )
    trial = build_trainjob(request, template, labels={"app.kubernetes.io/component": "tuning"})
    del trial["metadata"]["name"]  # Katib's: the trial's name
    return trial


def render_experiment(space: SearchSpace, options: TuningOptions, platform=None) -> dict:
    """The Experiment object for ``CustomObjectsApi.create_namespaced_custom_object`` (plain JSON types).

    Args:
        space: the search space.
        options: the study's options.
        platform: the cluster's names (:class:`alpr.kubeflow.platform.PlatformSettings`; default: the environment's,
            ``ALPR_K8S_*``), the same the pipeline's tasks use.

    Returns:
        the Experiment; its ``trialSpec`` is a ``batch/v1`` Job, or a Kubeflow Trainer ``TrainJob`` when
        ``options.distributed_trials`` (see the module's docstring).

    Raises:
        ValueError: inconsistent options (see :func:`alpr.tuning.trial.trial_argv`), a value that is not
            shell-safe, or a trial scale or resource that :class:`alpr.kubeflow.trainjob.TrainJobRequest` refuses.
    """

    platform = platform or current_settings()
    options.check_shell_safe()
    argv = trial_argv(space, options, {p.name: "${trialParameters." + _trial_parameter(p.name) + "}" for p in space})
    trial_template: dict[str, Any] = {
        "primaryContainerName": TRAINJOB_CONTAINER if options.distributed_trials else PRIMARY_CONTAINER,
        "trialParameters": [
            {"name": _trial_parameter(p.name), "reference": p.name, "description": p.description or p.name}
            for p in space
        ],
    }
    if options.distributed_trials:
        trial_template.update(
            primaryPodLabels=dict(TRAINJOB_PRIMARY_POD_LABELS),
            successCondition=TRAINJOB_SUCCESS_CONDITION,
            failureCondition=TRAINJOB_FAILURE_CONDITION,
            trialSpec=_trainjob_trial(options, argv, platform),
        )
    else:
        trial_template["trialSpec"] = _job_trial(options, argv, platform)
    objective: dict[str, Any] = {
        "type": options.direction,
        "objectiveMetricName": options.objective,
        "additionalMetricNames": options.metric_names[1:],
        "metricStrategies": [{"name": options.objective, "value": "max" if options.direction == "maximize" else "min"}]
        + [{"name": m, "value": "latest"} for m in options.metric_names[1:]],
    }
    if options.goal is not None:
        objective["goal"] = float(options.goal)
    spec: dict[str, Any] = {
        "objective": objective,
        "algorithm": {
            "algorithmName": options.algorithm,
            "algorithmSettings": [{"name": "random_state", "value": str(options.random_state)}],
        },
        "parallelTrialCount": options.parallel,
        "maxTrialCount": options.max_trials,
        "maxFailedTrialCount": options.max_failed,
        "parameters": space.katib(),
        "metricsCollectorSpec": {
            "collector": {"kind": "StdOut"},
            "source": {"filter": {"metricsFormat": [METRICS_FILTER]}},
        },
        "trialTemplate": trial_template,
    }
    if options.early_stopping:
        spec["earlyStopping"] = {
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": str(options.min_trials_required)},
                {"name": "start_step", "value": str(options.start_step)},
            ],
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Experiment",
        "metadata": {
            "name": options.name,
            "namespace": options.namespace,
            "labels": {"app.kubernetes.io/part-of": "alpr", "app.kubernetes.io/component": "tuning"},
        },
        "spec": spec,
    }


def experiment_yaml(experiment: dict) -> str:
    """The Experiment as YAML, with a header saying where it comes from."""
    import yaml

    header = (
        "# Katib Experiment of the ALPR detector's hyperparameters -- rendered, do not edit by hand:\n"
        "#   python -m alpr.tuning.katib render -o katib/experiment.yaml\n"
        "# Search space: alpr/tuning/space.py; options: alpr/tuning/options.py; see katib/README.md.\n"
    )
    return header + yaml.safe_dump(experiment, sort_keys=False, width=120)


# --------------------------------------------------------------------------------------------------- cluster
def cluster_available() -> bool:
    """Whether a Kubernetes API is configured here: in a pod (service account), or a kubeconfig file exists."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p) for p in paths.split(os.pathsep) if p] or [Path.home() / ".kube" / "config"]
    return any(p.is_file() for p in candidates)


def custom_objects_api(context: str | None = None):
    """A ``CustomObjectsApi`` from the in-cluster service account, else the kubeconfig (``context`` if given).

    Raises:
        KatibError: no Kubernetes configuration is available.
    """
    from kubernetes import client, config

    configuration = client.Configuration()  # this API's own: the process-wide default is left alone
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            # $KUBECONFIG read now (the client reads it once, at import)
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None, context=context, client_configuration=configuration
            )
    except config.ConfigException as exc:
        raise KatibError(f"no Kubernetes configuration (in-cluster or kubeconfig): {exc}") from None
    return client.CustomObjectsApi(client.ApiClient(configuration))


def _retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` retried on transient API errors (5xx, 429, connection errors): 5 tries, exponential backoff."""
    from kubernetes.client.exceptions import ApiException
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
    from urllib3.exceptions import HTTPError

    def transient(exc: BaseException) -> bool:
        if isinstance(exc, ApiException):
            return exc.status in (429, 500, 502, 503, 504)
        return isinstance(exc, (HTTPError, ConnectionError))

    wrapped = retry(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=0.5, max=10),
        reraise=True,
    )(call)
    return wrapped(*args, **kwargs)


def create_experiment(api, experiment: dict) -> dict:
    """Create ``experiment`` on the cluster; return the created object.

    Raises:
        KatibError: the name is taken (409), Katib is not installed (404), or the account may not create
            Experiments (401/403) -- each with what to do.
    """
    from kubernetes.client.exceptions import ApiException

    name, ns = experiment["metadata"]["name"], experiment["metadata"]["namespace"]
    try:
        return _retrying(api.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, experiment)
    except ApiException as exc:
        if exc.status == 409:
            raise KatibError(
                f"Katib Experiment {ns}/{name} already exists: choose another --tune-name or delete it "
                f"(kubectl -n {ns} delete experiment {name})"
            ) from None
        if exc.status == 404:
            raise KatibError(
                f"the cluster serves no {GROUP}/{VERSION} {PLURAL} in namespace {ns!r}: is Katib "
                "installed, and does the namespace exist?"
            ) from None
        if exc.status in (401, 403):
            raise KatibError(
                f"not allowed to create Katib Experiments in namespace {ns!r} ({exc.reason}): grant "
                "the account create/get/list on experiments.kubeflow.org and trials.kubeflow.org"
            ) from None
        raise


def _condition(experiment: dict) -> tuple[str | None, dict]:
    """The Experiment's current state: the last condition whose status is True (Katib appends them in order)."""
    conditions = (experiment.get("status") or {}).get("conditions") or []
    current = [c for c in conditions if str(c.get("status")) == "True"]
    if not current:
        return None, {}
    return current[-1].get("type"), current[-1]


def progress_line(experiment: dict) -> str:
    status = experiment.get("status") or {}
    best = status.get("currentOptimalTrial") or {}
    line = (
        f"trials: {status.get('trials', 0)} created, {status.get('trialsRunning', 0)} running, "
        f"{status.get('trialsSucceeded', 0)} succeeded, {status.get('trialsFailed', 0)} failed, "
        f"{status.get('trialsEarlyStopped', 0)} early-stopped"
    )
    if best.get("bestTrialName"):
        metrics = {m.get("name"): m.get("latest") for m in (best.get("observation") or {}).get("metrics") or []}
        line += f"; best so far {best['bestTrialName']} {metrics}"
    return line


def follow_experiment(
    api,
    name: str,
    namespace: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 15.0,
    on_progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll the Experiment until its ``Succeeded`` condition; return the final object.

    Args:
        api: a ``CustomObjectsApi``.
        name: Experiment name.
        namespace: its namespace.
        timeout_s: give up after this many seconds (None: wait as long as it takes).
        poll_s: seconds between polls.
        on_progress: called with a one-line summary whenever the trial counts change.
        clock: monotonic clock (seconds).
        sleep: sleep function.

    Raises:
        ExperimentFailed: the Experiment's ``Failed`` condition (reason and message included).
        ExperimentTimeout: not finished within ``timeout_s``; the Experiment keeps running on the cluster.
        KatibError: the Experiment disappeared (deleted) while being followed.
    """
    from kubernetes.client.exceptions import ApiException

    deadline = None if timeout_s is None else clock() + timeout_s
    last_line = None
    while True:
        try:
            experiment = _retrying(api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise KatibError(f"Katib Experiment {namespace}/{name} no longer exists (deleted?)") from None
            raise
        state, condition = _condition(experiment)
        line = progress_line(experiment)
        if on_progress is not None and line != last_line:
            on_progress(f"{namespace}/{name} {state or 'Pending'}: {line}")
            last_line = line
        if state == "Succeeded":
            return experiment
        if state == "Failed":
            raise ExperimentFailed(
                f"Katib Experiment {namespace}/{name} failed: {condition.get('reason', '?')}: "
                f"{condition.get('message', '')} ({line}; maxFailedTrialCount "
                f"{experiment.get('spec', {}).get('maxFailedTrialCount')})"
            )
        if deadline is not None and clock() >= deadline:
            raise ExperimentTimeout(
                f"Katib Experiment {namespace}/{name} did not finish within {timeout_s:g} s (state "
                f"{state or 'Pending'}; {line}); it keeps running on the cluster: follow it with "
                f"`kubectl -n {namespace} get experiment {name}` or stop it with "
                f"`kubectl -n {namespace} delete experiment {name}`"
            )
        wait = poll_s if deadline is None else max(0.0, min(poll_s, deadline - clock()))
        sleep(wait)


# --------------------------------------------------------------------------------------------------- results
def _float_or_none(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None  # Katib writes "unavailable" for a metric a trial never reported
    return value


def _metric_values(observation: dict | None, objective: str, direction: str) -> dict[str, float | None]:
    """Metric values of a Katib observation under the Experiment's strategies (objective best, others latest)."""
    out = {}
    best_key = "max" if direction == "maximize" else "min"
    for m in (observation or {}).get("metrics") or []:
        out[m["name"]] = _float_or_none(m.get(best_key if m["name"] == objective else "latest"))
    return out


@dataclass
class BestTrial:
    """The best trial of an Experiment.

    Attributes:
        name: the trial's name.
        parameters: the searched parameters, typed (``{"lr": 0.0031, "input_size": 320, ...}``).
        metrics: its metrics (the objective under its strategy, the others latest).
    """

    name: str
    parameters: dict[str, Any]
    metrics: dict[str, float | None] = field(default_factory=dict)


def best_trial(experiment: dict, space: SearchSpace) -> BestTrial:
    """``status.currentOptimalTrial`` of ``experiment``, typed by ``space``.

    Raises:
        KatibError: the Experiment has no optimal trial (no trial reported the objective).
    """
    objective = experiment["spec"]["objective"]
    best = (experiment.get("status") or {}).get("currentOptimalTrial") or {}
    if not best.get("bestTrialName"):
        meta = experiment["metadata"]
        raise KatibError(
            f"Katib Experiment {meta['namespace']}/{meta['name']} has no best trial: no trial "
            f"reported {objective['objectiveMetricName']!r}"
        )
    params = space.convert({a["name"]: a["value"] for a in best.get("parameterAssignments") or []})
    metrics = _metric_values(best.get("observation"), objective["objectiveMetricName"], objective["type"])
    return BestTrial(best["bestTrialName"], params, metrics)


#: Katib trial conditions → the metadata store's trial states.
_TRIAL_STATES = {
    "Succeeded": "succeeded",
    "EarlyStopped": "pruned",
    "Failed": "failed",
    "MetricsUnavailable": "failed",
    "Killed": "failed",
}


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def list_trials(api, experiment: dict, space: SearchSpace) -> list[dict]:
    """The Experiment's trials as metadata-store rows (oldest first).

    Returns:
        ``[{"name", "number", "state" (running/succeeded/pruned/failed), "params", "value", "metrics",
        "message", "started_at", "finished_at"}]``.
    """
    meta, spec = experiment["metadata"], experiment["spec"]
    objective, direction = spec["objective"]["objectiveMetricName"], spec["objective"]["type"]
    listing = _retrying(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        meta["namespace"],
        TRIALS,
        label_selector=f"{EXPERIMENT_LABEL}={meta['name']}",
    )
    items = [
        t
        for t in listing.get("items") or []
        if (t.get("metadata", {}).get("labels") or {}).get(EXPERIMENT_LABEL) == meta["name"]
    ]
    items.sort(key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"]))
    rows = []
    for number, trial in enumerate(items):
        status = trial.get("status") or {}
        state, condition = _condition(trial)
        metrics = _metric_values(status.get("observation"), objective, direction)
        try:
            params = space.convert({a["name"]: a["value"] for a in trial["spec"].get("parameterAssignments") or []})
        except ValueError as exc:
            log.warning("trial %s: %s", trial["metadata"]["name"], exc)
            params = {a["name"]: a["value"] for a in trial["spec"].get("parameterAssignments") or []}
        rows.append(
            {
                "name": trial["metadata"]["name"],
                "number": number,
                "state": _TRIAL_STATES.get(state, "running"),
                "params": params,
                "value": metrics.get(objective),
                "metrics": metrics,
                "message": condition.get("message", "") if state in ("Failed", "MetricsUnavailable", "Killed") else "",
                "started_at": _time(status.get("startTime")),
                "finished_at": _time(status.get("completionTime")),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------- CLI
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = TuningOptions(name="alpr-tune", image=DEFAULT_COMPONENT_IMAGE)
    p = argparse.ArgumentParser(prog="python -m alpr.tuning.katib", description="The ALPR Katib Experiment.")
    sub = p.add_subparsers(dest="command", required=True)
    render = sub.add_parser(
        "render", help="write the Experiment YAML (unset options: TuningOptions' defaults, i.e. the pipeline's)"
    )
    render.add_argument("-o", "--output", type=Path, default=None, help="output file (default: stdout)")
    render.add_argument("--name", default="alpr-tune")
    render.add_argument("--namespace", default=None, help=f"(default {defaults.namespace})")
    render.add_argument(
        "--data", default=None, help=f"the trials' --data, a version name (default {defaults.data}, the pipeline's)"
    )
    render.add_argument(
        "--algorithm", default=None, help=f"{' | '.join(ALGORITHMS)} (default {defaults.algorithm}, the pipeline's)"
    )
    render.add_argument("--max-trials", type=int, default=None, help=f"(default {defaults.max_trials})")
    render.add_argument("--parallel", type=int, default=None, help=f"(default {defaults.parallel})")
    render.add_argument("--max-failed", type=int, default=None, help=f"(default {defaults.max_failed})")
    render.add_argument(
        "--trial-workers",
        type=int,
        default=None,
        help=f"pods per trial; above 1 a trial is a Kubeflow Trainer TrainJob (default {defaults.trial_workers})",
    )
    render.add_argument(
        "--trial-gpus-per-worker",
        type=int,
        default=None,
        help="GPUs of each of a trial's pods; above 1 a trial is a TrainJob (default "
        f"{defaults.trial_gpus_per_worker}: none)",
    )
    render.add_argument(
        "--image",
        default=DEFAULT_COMPONENT_IMAGE,
        help=f"the trials' image (default: the released components image, {DEFAULT_COMPONENT_IMAGE})",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``render``: print or write the Experiment YAML; returns the exit status (2: bad option)."""

    args = _parse_args(argv)
    given = {
        k: getattr(args, k)
        for k in (
            "name",
            "namespace",
            "data",
            "algorithm",
            "max_trials",
            "parallel",
            "max_failed",
            "trial_workers",
            "trial_gpus_per_worker",
            "image",
        )
        if getattr(args, k) is not None
    }
    try:
        text = experiment_yaml(render_experiment(default_space(), TuningOptions(**given)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
