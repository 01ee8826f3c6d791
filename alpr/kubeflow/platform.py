"""What each pipeline task needs from Kubernetes, declared with kfp-kubernetes: :func:`apply_platform`.

The pipeline body calls ``apply_platform(task, "<step>")`` once per task. On a cluster the compiled pipeline then
carries, per task (``platforms.kubernetes`` of the KFP IR YAML):

==================  =================================================================================================
DB URL + password   Secret ``db_secret`` (default ``alpr-db``), keys ``url`` / ``password`` → env ``ALPR_DB_URL``,
                    ``ALPR_DB_PASSWORD`` (the password is injected into the URL by :class:`alpr.metadata.MetadataStore`)
GCS key             Secret ``gcs_key_secret`` (default ``alpr-gcs-key``, key ``key.json``) mounted (optional) at
                    ``/var/secrets/google``; env ``GOOGLE_APPLICATION_CREDENTIALS`` points at the file. Set the
                    secret name to ``""`` on clusters with workload identity.
backend URLs        ConfigMap ``config_map`` (default ``alpr-config``) keys ``ALPR_STORAGE_URI``,
                    ``ALPR_DATASET_REPO``, ``ALPR_DVC_REMOTE``, ``ALPR_DEPLOY_TARGET``, ``ALPR_MONITOR_URL`` → env of
                    the same names (not secret)
git SSH key         (Record only) Secret ``git_secret`` (default ``alpr-git``, keys ``ssh-privatekey``,
                    ``known_hosts``) mounted (optional) at ``/var/secrets/git``; env ``GIT_SSH_COMMAND`` uses it
workspace           PVC ``pvc`` (default ``alpr-workspace``) at ``/mnt/alpr``: env ``ALPR_WORKSPACE`` and
                    ``ALPR_CACHE_DIR`` (clones, model caches, mmengine work dirs for resuming, TensorBoard logs
                    when the storage URI is on the PVC)
resources           CPU / memory requests and limits per step (:data:`DEFAULT_RESOURCES`)
GPU (Train)         ``train_gpus`` × ``accelerator_type`` (default 1 × ``nvidia.com/gpu``), ``node_selector`` and
                    ``tolerations`` (default: tolerate the ``nvidia.com/gpu`` taint)
retries             the steps that talk to the network (:data:`NETWORK_STEPS`): ``retries`` with exponential
                    back-off from ``retry_backoff``
caching             KFP caching on for Record / Evaluate / Test (``caching``), off for Train (``train_caching``)
                    and always off for Tune, Deploy and Finish (:data:`NEVER_CACHED`)
run identity        env ``ALPR_RUN_NAME`` (:data:`RUN_NAME_ENV`) from the pod's label ``pipeline/runid`` (the KFP
                    run id, :data:`RUN_ID_FIELD_PATH`) through the downward API: the tasks know their run without
                    an input, so the run does not enter the cache key
image pull secrets  ``image_pull_secrets`` (private registries)
==================  =================================================================================================

Values come from :class:`PlatformSettings`: environment variables ``ALPR_K8S_<FIELD>`` (JSON for the dict and list
fields), the ``platform:`` section of a ``--kfp-config`` file (see :mod:`alpr.kubeflow.submit`), or :func:`using`. They
are compile-time values: secrets are referenced by name only, never by value. KFP builds a pipeline's graph when
``@dsl.pipeline`` decorates it (when ``pipeline.py`` is imported), so the environment at import is what a plain
compile carries; :func:`with_platform` rebuilds the pipeline with other settings.

``kfp.local`` (the embedded default) ignores all of this: the SubprocessRunner passes no platform config,
resources, retries or container environment to its subprocesses.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_RESOURCES",
    "NETWORK_STEPS",
    "RUN_ID_FIELD_PATH",
    "RUN_NAME_ENV",
    "STEPS",
    "PlatformSettings",
    "StepResources",
    "apply_platform",
    "current_settings",
    "using",
    "with_platform",
]

#: The pipeline steps :func:`apply_platform` knows (the ``step`` argument); ``finish`` is the exit handler.
STEPS = ("record", "train", "evaluate", "test", "deploy", "tune", "finish")
#: Steps that talk to the network (database, buckets, git server, Kubernetes API): retried on failure.
NETWORK_STEPS = frozenset({"record", "evaluate", "test", "deploy", "finish"})
#: Steps never cached: Deploy changes the cluster, Tune starts a Katib Experiment, Finish records how this run
#: ended.
NEVER_CACHED = frozenset({"deploy", "tune", "finish"})

#: The environment variable that names a task's pipeline run (read by :func:`alpr.steps.runs.current_run_name`).
RUN_NAME_ENV: Final = "ALPR_RUN_NAME"
#: Where a task's pod finds its run: the label the KFP v2 API server puts on every pod of a run, the run's id
#: (``pipeline/runid``; ``SetPodMetadataLabels(LabelKeyWorkflowRunId, RunID)`` in kubeflow/pipelines
#: backend/src/apiserver/template/v2_template.go). The run's display name is on the Workflow only, not on its pods.
RUN_ID_FIELD_PATH: Final = "metadata.labels['pipeline/runid']"

#: Environment variables that the ConfigMap ``config_map`` provides to every task (keys = variable names).
CONFIG_MAP_KEYS = ("ALPR_STORAGE_URI", "ALPR_DATASET_REPO", "ALPR_DVC_REMOTE", "ALPR_DEPLOY_TARGET", "ALPR_MONITOR_URL")


class StepResources(BaseModel):
    """CPU and memory of one step's container, in Kubernetes quantities (CPU: ``"2"``, ``"500m"``; memory:
    ``"4Gi"``, ``"512Mi"``). KFP validates the formats when they are applied."""

    model_config = {"extra": "forbid"}

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


#: Default resources per step (requests / limits). Train: data loading and mmcv ops; the GPU comes on top.
DEFAULT_RESOURCES: dict[str, StepResources] = {
    "record": StepResources(cpu_request="1", cpu_limit="2", memory_request="2Gi", memory_limit="4Gi"),
    "train": StepResources(cpu_request="4", cpu_limit="8", memory_request="12Gi", memory_limit="24Gi"),
    "evaluate": StepResources(cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"),
    "test": StepResources(cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"),
    "deploy": StepResources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi"),
    "tune": StepResources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi"),
    "finish": StepResources(cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="512Mi"),
}

#: Default GPU tolerations of Train: the taint GPU node pools commonly carry.
DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


class Toleration(BaseModel):
    """One Kubernetes toleration (the fields of ``core/v1 Toleration``; ``tolerationSeconds`` or
    ``toleration_seconds``)."""

    model_config = {"extra": "forbid", "populate_by_name": True}

    key: str | None = None
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")


class PlatformSettings(BaseSettings):
    """Names and sizes the compiled pipeline asks Kubernetes for; environment ``ALPR_K8S_<FIELD>``.

    Attributes:
        db_secret: Secret with the metadata DB URL and password (keys ``db_url_key``, ``db_password_key``).
        db_url_key: key of the DB URL (``mysql+pymysql://user@host:3306/db``, no password) in ``db_secret``.
        db_password_key: key of the DB password in ``db_secret``.
        gcs_key_secret: Secret holding a GCS service-account key file; ``""``: none (workload identity).
        gcs_key_file: the key file's key (file name) in ``gcs_key_secret``.
        gcs_key_mount: folder where ``gcs_key_secret`` is mounted.
        git_secret: Secret with ``ssh-privatekey`` and ``known_hosts`` for the dataset repository (Record);
            ``""``: none (HTTPS or a repository on the PVC).
        git_secret_mount: folder where ``git_secret`` is mounted.
        config_map: ConfigMap with the backend URLs (:data:`CONFIG_MAP_KEYS`); ``""``: none (then set them in
            the image or not at all).
        pvc: PersistentVolumeClaim for the workspace (caches, work dirs, TensorBoard logs); ``""``: none.
        pvc_mount: where the PVC is mounted; ``ALPR_WORKSPACE`` and ``ALPR_CACHE_DIR`` point into it.
        resources: per step CPU/memory (:class:`StepResources`); steps not given keep :data:`DEFAULT_RESOURCES`.
        train_gpus: GPUs of Train (0: CPU only).
        accelerator_type: the GPU resource name (``nvidia.com/gpu``, ``amd.com/gpu``).
        node_selector: node labels Train must run on (e.g. ``{"cloud.google.com/gke-accelerator": "nvidia-l4"}``).
        tolerations: tolerations of Train (GPU node pools are usually tainted).
        retries: retries of the network steps (:data:`NETWORK_STEPS`); 0: none.
        retry_backoff: first back-off between retries (doubles each time, at most ``retry_backoff_max``).
        retry_backoff_max: the longest back-off (KFP caps it at 1 h).
        caching: KFP caching of Record, Evaluate and Test.
        train_caching: KFP caching of Train (off: retraining with the same inputs trains again).
        image_pull_secrets: Secrets for pulling the images from a private registry.
    """

    model_config = SettingsConfigDict(env_prefix="ALPR_K8S_", extra="forbid")

    db_secret: str = "alpr-db"
    db_url_key: str = "url"
    db_password_key: str = "password"
    gcs_key_secret: str = "alpr-gcs-key"
    gcs_key_file: str = "key.json"
    gcs_key_mount: str = "/var/secrets/google"
    git_secret: str = "alpr-git"
    git_secret_mount: str = "/var/secrets/git"
    config_map: str = "alpr-config"
    pvc: str = "alpr-workspace"
    pvc_mount: str = "/mnt/alpr"
    resources: dict[str, StepResources] = Field(default_factory=dict)
    train_gpus: int = Field(default=1, ge=0)
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=lambda: [Toleration(**t) for t in DEFAULT_GPU_TOLERATIONS])
    retries: int = Field(default=3, ge=0)
    retry_backoff: str = "30s"
    retry_backoff_max: str = "600s"
    caching: bool = True
    train_caching: bool = False
    image_pull_secrets: list[str] = Field(default_factory=list)

    @field_validator("resources")
    @classmethod
    def _known_steps(cls, value: dict[str, StepResources]) -> dict[str, StepResources]:
        unknown = sorted(set(value) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; the steps are {list(STEPS)}")
        return value

    @field_validator("pvc_mount", "gcs_key_mount", "git_secret_mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    def resources_of(self, step: str) -> StepResources:
        """The resources of ``step``: the configured ones, else :data:`DEFAULT_RESOURCES`."""
        return self.resources.get(step) or DEFAULT_RESOURCES[step]


_ACTIVE: contextvars.ContextVar[PlatformSettings | None] = contextvars.ContextVar("alpr_platform", default=None)


def current_settings() -> PlatformSettings:
    """The settings :func:`apply_platform` uses: those of the innermost :func:`using`, else the environment's."""
    return _ACTIVE.get() or PlatformSettings()


@contextlib.contextmanager
def using(settings: PlatformSettings) -> Iterator[PlatformSettings]:
    """Compile with ``settings`` instead of the environment's (e.g. those of a ``--kfp-config`` file)."""
    token = _ACTIVE.set(settings)
    try:
        yield settings
    finally:
        _ACTIVE.reset(token)


def with_platform(pipeline: Any, settings: PlatformSettings) -> Any:
    """Rebuild a ``@dsl.pipeline`` (a ``GraphComponent``) with ``settings`` applied by its :func:`apply_platform`
    calls, keeping its name, description, display name and config.

    Args:
        pipeline: the decorated pipeline (it keeps its function as ``pipeline_func``).
        settings: the platform values to compile in.

    Returns:
        A new ``GraphComponent`` to compile or submit.

    Raises:
        TypeError: ``pipeline`` is not a ``@dsl.pipeline``.
    """
    from kfp import dsl

    func = getattr(pipeline, "pipeline_func", None)
    if func is None:
        raise TypeError(f"with_platform needs a @dsl.pipeline, got {type(pipeline).__name__}")
    info = pipeline.component_spec.implementation.graph.pipeline_info
    with using(settings):
        return dsl.pipeline(
            func,
            name=pipeline.component_spec.name,
            description=pipeline.component_spec.description,
            display_name=info.display_name or None,
            pipeline_config=getattr(pipeline, "pipeline_config", None),
        )


def apply_platform(task: Any, step: str, settings: PlatformSettings | None = None) -> Any:
    """Declare what ``task`` needs from Kubernetes (see the module docstring) and return it.

    Args:
        task: a ``kfp.dsl.PipelineTask`` of a container component (inside a ``@dsl.pipeline`` body).
        step: which step it is, one of :data:`STEPS`; chooses resources, GPU, retries and caching.
        settings: the values to apply (default: :func:`current_settings`).

    Returns:
        ``task``, for chaining.

    Raises:
        ValueError: ``step`` is unknown, or a resource quantity is malformed (KFP's message names it).
    """
    from kfp import kubernetes

    if step not in STEPS:
        raise ValueError(f"apply_platform: unknown step {step!r}; the steps are {list(STEPS)}")
    s = settings or current_settings()

    # The run's identity, outside the inputs (and so outside the cache key).
    kubernetes.use_field_path_as_env(task, env_name=RUN_NAME_ENV, field_path=RUN_ID_FIELD_PATH)
    # Backends: DB URL and password from a Secret, the other URLs from a ConfigMap, the GCS key as a file.
    kubernetes.use_secret_as_env(
        task,
        secret_name=s.db_secret,
        secret_key_to_env={s.db_url_key: "ALPR_DB_URL", s.db_password_key: "ALPR_DB_PASSWORD"},
    )
    if s.config_map:
        kubernetes.use_config_map_as_env(
            task, config_map_name=s.config_map, config_map_key_to_env={key: key for key in CONFIG_MAP_KEYS}
        )
    if s.gcs_key_secret:
        kubernetes.use_secret_as_volume(task, secret_name=s.gcs_key_secret, mount_path=s.gcs_key_mount, optional=True)
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{s.gcs_key_mount}/{s.gcs_key_file}")
    if step == "record" and s.git_secret:
        kubernetes.use_secret_as_volume(task, secret_name=s.git_secret, mount_path=s.git_secret_mount, optional=True)
        task.set_env_variable(
            "GIT_SSH_COMMAND",
            f"ssh -i {s.git_secret_mount}/ssh-privatekey -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={s.git_secret_mount}/known_hosts",
        )
    if s.pvc:
        kubernetes.mount_pvc(task, pvc_name=s.pvc, mount_path=s.pvc_mount)
        task.set_env_variable("ALPR_WORKSPACE", s.pvc_mount)
        task.set_env_variable("ALPR_CACHE_DIR", f"{s.pvc_mount}/cache")
    if s.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(s.image_pull_secrets))

    # Resources; the GPU, its node selector and tolerations for Train.
    r = s.resources_of(step)
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)
    if step == "train" and s.train_gpus > 0:
        task.set_accelerator_type(s.accelerator_type).set_accelerator_limit(s.train_gpus)
        for key, value in s.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for t in s.tolerations:
            kubernetes.add_toleration(
                task,
                key=t.key,
                operator=t.operator,
                value=t.value,
                effect=t.effect,
                toleration_seconds=t.toleration_seconds,
            )

    # Retries for the network steps; the caching policy.
    if step in NETWORK_STEPS and s.retries > 0:
        task.set_retry(
            num_retries=s.retries,
            backoff_duration=s.retry_backoff,
            backoff_factor=2.0,
            backoff_max_duration=s.retry_backoff_max,
        )
    if step in NEVER_CACHED:
        task.set_caching_options(enable_caching=False)
    else:
        task.set_caching_options(enable_caching=s.train_caching if step == "train" else s.caching)
    return task
