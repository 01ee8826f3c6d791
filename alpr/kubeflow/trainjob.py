"""Distributed training on a cluster: a Kubeflow Trainer ``TrainJob`` that runs ``torchrun`` on several pods.

The Train step hands a distributed training (more than one worker, or more than one GPU) to Kubeflow Trainer, the
operator that starts and supervises distributed PyTorch workers, instead of launching workers itself:

- :func:`step_pod_template` reads the step's own pod and keeps what the training needs to behave as the step does
  (:class:`PodTemplate`): the components image, the environment :mod:`alpr.kubeflow.platform` gives every task (the
  metadata DB Secret, the backend ConfigMap, the GCS key, the workspace paths; the run, which the step reads from a
  label of its own pod, as a literal value), the workspace PVC and Secret volumes, the service account, image pull
  secrets, node selector and tolerations. So the workers get the same Secrets, PVC and ConfigMap as the step.
- :class:`TrainJobRequest` says what to run where: the ``torchrun`` command, workers, GPUs per worker, CPU and
  memory per worker, the training runtime. :func:`build_trainjob` makes the ``TrainJob`` object of both.
- :func:`run_trainjob` creates it (or follows the one an earlier attempt of the same step created: a retried step
  starts no second training), follows its status conditions to ``Complete`` or ``Failed`` (raising
  :class:`TrainJobFailed` with the operator's reason and message), echoes the rank-0 pod's log lines as they come,
  and deletes the ``TrainJob`` when the step is cancelled (SIGTERM: Kubeflow Pipelines cancels a run by deleting
  its pods), interrupted, times out or loses the API.

Why ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) and not ``PyTorchJob`` (``kubeflow.org/v1``): Kubeflow Trainer
v2 replaced the Training Operator v1 and its per-framework custom resources (``PyTorchJob``, ``TFJob``, ``MPIJob``,
...) with one ``TrainJob`` that references a training runtime; the v1 operator is deprecated. v2.2 replaced the
TrainJob's ``podTemplateOverrides`` with ``runtimePatches`` (patches keyed by a ``manager``); v2.3.0 is the current
release and the one this module is written and tested against (its published CRD is committed under
``tests/cluster/crds/trainer-v2.3.0/``).

How Trainer v2.3.0 runs it (facts from its sources, tag ``v2.3.0``): the ``ClusterTrainingRuntime``
:data:`DEFAULT_RUNTIME` (``manifests/base/runtimes/torch_distributed.yaml``) has one replicated job ``node`` whose
container ``node`` is the trainer; the TrainJob's ``trainer`` sets that container's image, command, env and
resources (``resourcesPerNode``), and ``numNodes`` pods run it. The torch plugin sets the environment ``torchrun``
reads its rendezvous flags from -- ``PET_NNODES`` (``numNodes``), ``PET_NPROC_PER_NODE`` (``numProcPerNode``, or
the GPUs of ``resourcesPerNode``, or its CPUs), ``PET_NODE_RANK`` (the Job completion index),
``PET_MASTER_ADDR`` (``<name>-node-0-0.<name>``) and ``PET_MASTER_PORT`` (29500) -- and refuses a TrainJob that
sets any of them itself. Its status copies the JobSet's terminal condition as ``Complete`` or ``Failed`` (with the
JobSet's reason and message; ``DeadlineExceeded`` past ``activeDeadlineSeconds``). The pods carry JobSet's labels:
``jobset.sigs.k8s.io/jobset-name`` (the TrainJob's name), ``jobset.sigs.k8s.io/replicatedjob-name`` (``node``) and
the Job's ``batch.kubernetes.io/job-completion-index`` (the node rank): :func:`rank0_selector`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from alpr.kubeflow import kube_api
from alpr.kubeflow.platform import DEFAULT_RESOURCES, current_settings

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RUNTIME",
    "GROUP",
    "KIND",
    "PATCH_MANAGER",
    "PLURAL",
    "RUNTIME_ENV",
    "TRAINER_CONTAINER",
    "VERSION",
    "PodTemplate",
    "TrainJobCancelled",
    "TrainJobError",
    "TrainJobFailed",
    "TrainJobOutcome",
    "TrainJobRequest",
    "TrainJobTimeout",
    "build_trainjob",
    "kube_clients",
    "pod_template_from_pod",
    "rank0_selector",
    "run_trainjob",
    "step_pod_template",
    "trainjob_name",
]

#: The TrainJob resource (Kubeflow Trainer v2.3.0).
GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
#: The training runtime a TrainJob references unless ``$ALPR_TRAIN_RUNTIME`` names another: Trainer's
#: ``ClusterTrainingRuntime`` for PyTorch (manifests/base/runtimes/torch_distributed.yaml).
DEFAULT_RUNTIME = "torch-distributed"
#: The environment variable that names another training runtime (one with the same ``node`` job and container).
RUNTIME_ENV = "ALPR_TRAIN_RUNTIME"
#: The kinds of runtime a TrainJob may reference (``spec.runtimeRef.kind``).
RUNTIME_KINDS = ("ClusterTrainingRuntime", "TrainingRuntime")
#: The replicated job and container of the trainer in Trainer's torch runtimes (``constants.Node``).
TRAINER_CONTAINER = "node"
#: Who owns this module's runtime patch (``spec.runtimePatches[].manager``; Trainer requires a domain-prefixed path).
PATCH_MANAGER = "alpr-kubeflow.github.io/train-step"
#: The environment Trainer's torch plugin sets for torchrun and refuses in a TrainJob's ``trainer.env``.
RESERVED_ENV = frozenset({"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"})
#: Labels JobSet and the Job controller put on every pod of a TrainJob (the JobSet is named as the TrainJob).
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
#: Prefix of this project's labels (the same as the InferenceService's).
LABEL_PREFIX = "alpr-kubeflow.github.io"
#: Where a pod finds its own namespace.
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: The container of a KFP v2 task's pod that runs the component (Argo adds ``wait``; KFP the ``kfp-launcher`` init).
STEP_CONTAINER = "main"
#: Environment of the step kept for the workers: :mod:`alpr.kubeflow.platform`'s (``ALPR_*``, the GCS key file, the
#: git SSH command); KFP's and Argo's own (``KFP_*``, ``ARGO_*``, ...) describe the step's pod, not the workers'.
KEPT_ENV_PREFIXES = ("ALPR_",)
KEPT_ENV_NAMES = frozenset({"GOOGLE_APPLICATION_CREDENTIALS", "GIT_SSH_COMMAND"})
#: Mount points kept (with their volumes): the workspace PVC and the Secret folders of
#: :class:`~alpr.kubeflow.platform.PlatformSettings` (defaults; the settings' own paths are kept too).
KEPT_MOUNT_ROOTS = ("/mnt/alpr", "/var/secrets")
#: Tolerations the API server adds to every pod (DefaultTolerationSeconds); the workers get them anyway.
DEFAULT_TOLERATION_KEYS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})
#: Log lines read from a pod the first time (a TrainJob followed again after a retry may have a long log).
FIRST_LOG_LINES = 500

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|[kMGTPE]i?|[eE][0-9]+)?$")
_OWN_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class TrainJobError(RuntimeError):
    """The TrainJob could not be created or followed (no cluster configuration, the name taken by something else,
    the object deleted by someone else, ...); the message says what."""


class TrainJobFailed(TrainJobError):
    """The TrainJob ended in its ``Failed`` condition.

    Attributes:
        reason: the condition's reason (the JobSet's, e.g. ``FailedJobs``, or Trainer's ``DeadlineExceeded``).
        message: the condition's message.
        name, namespace: the TrainJob (it is kept on the cluster, with its pods' logs).
    """

    def __init__(self, reason: str, message: str, *, name: str = "", namespace: str = "", hint: str = "") -> None:
        self.reason, self.message, self.name, self.namespace = reason, message, name, namespace
        where = f"TrainJob {namespace}/{name}" if name else "TrainJob"
        super().__init__(f"{where} failed: {reason}: {message}" + (f" ({hint})" if hint else ""))


class TrainJobTimeout(TrainJobError, TimeoutError):
    """The TrainJob did not finish within the time given; it was deleted."""


class TrainJobCancelled(TrainJobError):
    """The process received SIGTERM while following the TrainJob (a cancelled pipeline run); it was deleted."""


# --------------------------------------------------------------------------------------------------- request
def _sanitise(text: str) -> str:
    """``text`` lower-cased with every run of characters outside ``[a-z0-9]`` made one ``-``, trimmed of ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


#: Longest name :func:`trainjob_name` makes: short enough that the rank pods' host names ``<name>-node-0-<rank>``
#: stay DNS labels (at most 63 characters) up to 10^13 workers.
NAME_LENGTH = 40


def trainjob_name(run_name: str, part: str = "") -> str:
    """A TrainJob name for the training of run ``run_name``: ``alpr-train-<sanitised run>-<8 hex digits>``.

    The digits are the start of the SHA-256 of ``run_name`` and ``part``, so the name is the same for every attempt
    of the same step (a retried step finds its TrainJob) and differs between runs whose sanitised names collide.
    ``part`` tells apart several trainings of one run (a Katib trial's name, say). At most :data:`NAME_LENGTH`
    characters, an RFC 1035 label.
    """
    digest = hashlib.sha256(f"{run_name}\0{part}".encode()).hexdigest()[:8]
    head = "alpr-train"
    room = NAME_LENGTH - len(head) - len(digest) - 2
    middle = _sanitise(run_name)[:room].strip("-")
    return f"{head}-{middle}-{digest}" if middle else f"{head}-{digest}"


def _default_runtime() -> str:
    return os.environ.get(RUNTIME_ENV, "").strip() or DEFAULT_RUNTIME


_TRAIN = DEFAULT_RESOURCES["train"]


@dataclass(frozen=True)
class TrainJobRequest:
    """What a TrainJob runs, and on what.

    Attributes:
        name: the TrainJob's name (:func:`trainjob_name`): an RFC 1035 label short enough that the rank pods' host
            names ``<name>-node-0-<rank>`` (Trainer's ``PET_MASTER_ADDR`` is the first) are DNS labels too.
        command: the trainer container's full command, e.g. ``["torchrun", "--max-restarts=1", "-m",
            "alpr.model.distributed", "/mnt/alpr/.../distributed_config.py"]``; torchrun reads the node count,
            processes per node, node rank and master address from the ``PET_*`` environment Trainer sets.
        workers: the TrainJob's ``numNodes``: pods, one per machine (>= 1).
        gpus_per_worker: GPUs of each pod (>= 0); above 0, ``resourcesPerNode`` limits ``accelerator`` to it and
            ``numProcPerNode`` is the same (one process per GPU, NCCL); 0: one process per pod on the CPU (gloo).
        accelerator: the GPU resource name (default: the platform settings' ``accelerator_type``).
        cpu_request, cpu_limit, memory_request, memory_limit: each pod's CPU and memory (Kubernetes quantities;
            default: :data:`~alpr.kubeflow.platform.DEFAULT_RESOURCES` ``["train"]``).
        runtime: the training runtime referenced (default ``$ALPR_TRAIN_RUNTIME``, else :data:`DEFAULT_RUNTIME`).
        runtime_kind: ``ClusterTrainingRuntime`` (default) or a namespaced ``TrainingRuntime``.
        env: environment added to the template's (``{"name", "value"}`` or ``{"name", "valueFrom"}`` dicts; a name
            given here wins); never one of :data:`RESERVED_ENV`.
        node_selector, tolerations: where GPU workers may run, added to the template's; None: the platform settings'
            ``node_selector`` and ``tolerations`` when ``gpus_per_worker`` > 0, else nothing.

    Raises:
        ValueError: naming the field at fault.
    """

    name: str
    command: tuple[str, ...]
    workers: int = 1
    gpus_per_worker: int = 0
    accelerator: str = field(default_factory=lambda: current_settings().accelerator_type)
    cpu_request: str = _TRAIN.cpu_request
    cpu_limit: str = _TRAIN.cpu_limit
    memory_request: str = _TRAIN.memory_request
    memory_limit: str = _TRAIN.memory_limit
    runtime: str = field(default_factory=_default_runtime)
    runtime_kind: str = RUNTIME_KINDS[0]
    env: tuple[dict[str, Any], ...] = ()
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[dict[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "env", tuple(dict(e) for e in self.env))
        if self.tolerations is not None:
            object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        if self.node_selector is not None:
            object.__setattr__(self, "node_selector", dict(self.node_selector))
        self._check()

    def _check(self) -> None:
        if not isinstance(self.name, str) or not _DNS_1035.match(self.name):
            raise ValueError(
                f"TrainJobRequest.name {self.name!r} is not an RFC 1035 label (lower-case letters, digits and '-', "
                "starting with a letter, ending with a letter or digit)"
            )
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"TrainJobRequest.workers must be an integer >= 1, got {self.workers!r}")
        longest = len(f"{self.name}-{TRAINER_CONTAINER}-0-{self.workers - 1}")
        if longest > 63:
            raise ValueError(
                f"TrainJobRequest.name {self.name!r} is too long: the host name of the last rank's pod "
                f"({self.name}-{TRAINER_CONTAINER}-0-{self.workers - 1}) would have {longest} characters, "
                "a DNS label has at most 63 (use trainjob_name())"
            )
        if isinstance(self.gpus_per_worker, bool) or not isinstance(self.gpus_per_worker, int):
            raise ValueError(f"TrainJobRequest.gpus_per_worker must be an integer, got {self.gpus_per_worker!r}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"TrainJobRequest.gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if not self.command or not all(isinstance(c, str) and c for c in self.command):
            raise ValueError(
                f"TrainJobRequest.command must be a non-empty list of non-empty strings, got {self.command!r}"
            )
        if self.gpus_per_worker and not re.fullmatch(
            r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9_.]+", self.accelerator
        ):
            raise ValueError(
                f"TrainJobRequest.accelerator {self.accelerator!r} is not an extended resource name (e.g. nvidia.com/gpu)"
            )
        for attr in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not _QUANTITY.match(value):
                raise ValueError(
                    f"TrainJobRequest.{attr} {value!r} is not a Kubernetes quantity (e.g. '4', '500m', '12Gi')"
                )
        if (
            not self.runtime
            or len(self.runtime) > 253
            or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", self.runtime)
        ):
            raise ValueError(f"TrainJobRequest.runtime {self.runtime!r} is not a valid runtime name (${RUNTIME_ENV}?)")
        if self.runtime_kind not in RUNTIME_KINDS:
            raise ValueError(f"TrainJobRequest.runtime_kind must be one of {RUNTIME_KINDS}, got {self.runtime_kind!r}")
        for e in self.env:
            name = e.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"TrainJobRequest.env: an entry without a name: {e!r}")
            if name in RESERVED_ENV:
                raise ValueError(
                    f"TrainJobRequest.env sets {name}, which Kubeflow Trainer's torch plugin sets itself "
                    f"(reserved: {', '.join(sorted(RESERVED_ENV))})"
                )

    @property
    def procs_per_worker(self) -> int:
        """The TrainJob's ``numProcPerNode``: ``gpus_per_worker``, or 1 on the CPU."""
        return self.gpus_per_worker or 1


# --------------------------------------------------------------------------------------------------- template
@dataclass(frozen=True)
class PodTemplate:
    """What the workers take over from the step's pod (:func:`step_pod_template`), as Kubernetes API JSON.

    Attributes:
        image: the container image (the components image the step runs).
        env: ``V1EnvVar``-shaped dicts (``{"name", "value"}`` or ``{"name", "valueFrom"}``).
        volumes: ``V1Volume`` dicts (the workspace PVC, Secret volumes).
        volume_mounts: ``V1VolumeMount`` dicts, each naming one of ``volumes``.
        service_account: the pods' service account (``""``: the namespace's default).
        image_pull_secrets: names of Secrets to pull the image with.
        node_selector: node labels the pods must run on.
        tolerations: ``V1Toleration`` dicts.
    """

    image: str
    env: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()
    service_account: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("PodTemplate.image is empty")
        for attr in ("env", "volumes", "volume_mounts", "tolerations"):
            object.__setattr__(self, attr, tuple(dict(x) for x in getattr(self, attr)))
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        object.__setattr__(self, "node_selector", dict(self.node_selector))
        names = {v.get("name") for v in self.volumes}
        missing = sorted({m.get("name") for m in self.volume_mounts} - names)
        if missing:
            raise ValueError(f"PodTemplate.volume_mounts name volumes that PodTemplate.volumes lacks: {missing}")


def _kept_env(name: str) -> bool:
    return name.startswith(KEPT_ENV_PREFIXES) or name in KEPT_ENV_NAMES


def _mount_roots() -> tuple[PurePosixPath, ...]:
    s = current_settings()
    return tuple(PurePosixPath(p) for p in {*KEPT_MOUNT_ROOTS, s.pvc_mount, s.gcs_key_mount, s.git_secret_mount})


def _worker_env(var: dict[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``var`` as the workers need it: a ``fieldRef`` to a label or annotation of the step's own pod becomes that
    value (the workers' pods do not carry it; a missing one reads ``""``, as the kubelet would); a
    ``resourceFieldRef`` loses its ``containerName`` (the step's container is not in the workers' pods)."""
    source = var.get("valueFrom") or {}
    ref = source.get("fieldRef")
    if ref:
        match = _OWN_FIELD.match(ref.get("fieldPath", ""))
        if match:
            return {"name": var["name"], "value": str((metadata.get(match[1]) or {}).get(match[2], ""))}
    if source.get("resourceFieldRef"):
        resource = {k: v for k, v in source["resourceFieldRef"].items() if k != "containerName"}
        return {"name": var["name"], "valueFrom": {"resourceFieldRef": resource}}
    return dict(var)


def pod_template_from_pod(pod: Mapping[str, Any], container: str = STEP_CONTAINER) -> PodTemplate:
    """The :class:`PodTemplate` of a step's pod given as Kubernetes API JSON (camelCase, as ``kubectl get -o json``
    or ``ApiClient.sanitize_for_serialization`` give it).

    Kept: ``container``'s image; its env vars named ``ALPR_*``, ``GOOGLE_APPLICATION_CREDENTIALS`` and
    ``GIT_SSH_COMMAND`` (:mod:`alpr.kubeflow.platform` sets them; ``valueFrom`` Secret and ConfigMap refs as they
    are, a ``fieldRef`` to the pod's own label or annotation -- ``ALPR_RUN_NAME`` -- as a literal); its mounts under
    ``/mnt/alpr`` and ``/var/secrets`` (and the platform settings' mount paths) with the volumes they name; the
    service account, image pull secrets, node selector and tolerations (less the API server's default
    ``not-ready``/``unreachable`` ones). Dropped: everything KFP and Argo add (their env, ``/kfp-launcher``,
    ``/var/run/argo``, scratch folders, the service-account token volume).

    Raises:
        TrainJobError: the pod has no container ``container`` (nor any container at all).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    chosen = next((c for c in containers if c.get("name") == container), None)
    if chosen is None:
        others = [c for c in containers if c.get("name") not in ("wait", "istio-proxy")]
        if len(others) != 1:
            raise TrainJobError(
                f"pod {metadata.get('namespace')}/{metadata.get('name')} has no container {container!r} "
                f"(containers: {[c.get('name') for c in containers]})"
            )
        chosen = others[0]
    env = [_worker_env(e, metadata) for e in chosen.get("env") or [] if _kept_env(e.get("name", ""))]
    roots = _mount_roots()
    mounts = [
        dict(m)
        for m in chosen.get("volumeMounts") or []
        if any(PurePosixPath(m.get("mountPath", "")).is_relative_to(r) for r in roots)
    ]
    wanted = {m["name"] for m in mounts}
    volumes = [dict(v) for v in spec.get("volumes") or [] if v.get("name") in wanted]
    tolerations = [dict(t) for t in spec.get("tolerations") or [] if t.get("key") not in DEFAULT_TOLERATION_KEYS]
    return PodTemplate(
        image=chosen.get("image", ""),
        env=tuple(env),
        volumes=tuple(volumes),
        volume_mounts=tuple(mounts),
        service_account=spec.get("serviceAccountName") or spec.get("serviceAccount") or "",
        image_pull_secrets=tuple(s["name"] for s in spec.get("imagePullSecrets") or [] if s.get("name")),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(tolerations),
    )


def _own_namespace() -> str | None:
    try:
        return POD_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def step_pod_template(
    core_api=None, namespace: str | None = None, pod_name: str | None = None, *, container: str = STEP_CONTAINER
) -> PodTemplate:
    """The :class:`PodTemplate` of the step's own pod (:func:`pod_template_from_pod`), read through the API.

    Args:
        core_api: a ``kubernetes.client.CoreV1Api`` (default: :func:`kube_clients`').
        namespace: the pod's namespace (default: the service account's namespace file, :data:`POD_NAMESPACE_FILE`).
        pod_name: the pod's name (default: ``$HOSTNAME``, which the kubelet sets to the pod's name).
        container: the step's container (KFP v2: ``main``).

    Raises:
        TrainJobError: no namespace or pod name to read, the pod is not there, or has no such container.
        kubernetes.client.ApiException: the API refused the read (403: the service account may not ``get`` pods).
    """
    from kubernetes.client.exceptions import ApiException

    namespace = namespace or _own_namespace()
    if not namespace:
        raise TrainJobError(f"the step's namespace is unknown: not in a pod ({POD_NAMESPACE_FILE} is missing)")
    pod_name = pod_name or os.environ.get("HOSTNAME", "").strip()
    if not pod_name:
        raise TrainJobError("the step's pod name is unknown: $HOSTNAME is not set")
    if core_api is None:
        core_api = kube_clients()[1]
    try:
        pod = _call(core_api.read_namespaced_pod, pod_name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(f"the step's pod {namespace}/{pod_name} does not exist") from None
        raise
    data = core_api.api_client.sanitize_for_serialization(pod)
    return pod_template_from_pod(data, container)


# --------------------------------------------------------------------------------------------------- object
def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value if _LABEL_VALUE.match(value) else ""


def _merged_env(*groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The env vars of ``groups`` in order, one per name (a later one replaces an earlier one in place)."""
    out: dict[str, dict[str, Any]] = {}
    for group in groups:
        for var in group:
            out[var["name"]] = dict(var)
    return list(out.values())


def build_trainjob(
    request: TrainJobRequest,
    template: PodTemplate,
    *,
    labels: Mapping[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) of ``request``, its pods made like ``template``.

    ``spec.trainer``: the template's image, the request's command, the template's env with the request's added and
    ``PYTHONUNBUFFERED=1`` (log lines reach ``kubectl logs`` as they are printed), ``numNodes`` = workers,
    ``numProcPerNode`` = GPUs per worker (1 on the CPU), ``resourcesPerNode`` (CPU/memory requests and limits; the
    GPU limit). ``spec.runtimePatches``: one patch of manager :data:`PATCH_MANAGER` on the runtime's ``node`` job
    with the template's volumes, its mounts on container ``node``, service account, image pull secrets, node
    selector and tolerations (with the request's for GPUs), and the pods' labels (``labels``,
    ``app.kubernetes.io/*``) with Istio's sidecar injection off (a sidecar keeps a finished pod running and sits
    between the ranks' rendezvous connections). Only fields of Trainer v2.3.0's CRD, which it validates against.

    Args:
        request: what to run.
        template: what the pods take over from the step (:func:`step_pod_template`).
        labels: more labels for the TrainJob and its pods (e.g. the run); values are made valid label values.
        namespace: ``metadata.namespace`` (omitted when None).

    Returns:
        the object as JSON-serialisable dicts (camelCase), for ``create_namespaced_custom_object``.
    """
    gpus = request.gpus_per_worker
    meta_labels = {
        "app.kubernetes.io/name": "alpr",
        "app.kubernetes.io/part-of": "alpr",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "alpr",
    }
    for key, value in (labels or {}).items():
        meta_labels[key] = _label_value(str(value))
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": request.cpu_request, "memory": request.memory_request},
        "limits": {"cpu": request.cpu_limit, "memory": request.memory_limit},
    }
    if gpus:
        resources["limits"][request.accelerator] = gpus
    env = _merged_env(template.env, request.env)
    if not any(e["name"] == "PYTHONUNBUFFERED" for e in env):
        env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    trainer: dict[str, Any] = {
        "image": template.image,
        "command": list(request.command),
        "env": env,
        "numNodes": request.workers,
        "numProcPerNode": request.procs_per_worker,
        "resourcesPerNode": resources,
    }

    node_selector = dict(template.node_selector)
    tolerations = [dict(t) for t in template.tolerations]
    extra_selector = request.node_selector
    extra_tolerations = request.tolerations
    if gpus and (extra_selector is None or extra_tolerations is None):
        settings = current_settings()
        if extra_selector is None:
            extra_selector = dict(settings.node_selector)
        if extra_tolerations is None:
            extra_tolerations = tuple(t.model_dump(by_alias=True, exclude_none=True) for t in settings.tolerations)
    node_selector.update(extra_selector or {})
    for t in extra_tolerations or ():
        if t not in tolerations:
            tolerations.append(dict(t))

    pod_spec: dict[str, Any] = {}
    if template.service_account:
        pod_spec["serviceAccountName"] = template.service_account
    if template.volumes:
        pod_spec["volumes"] = [dict(v) for v in template.volumes]
    if template.volume_mounts:
        pod_spec["containers"] = [
            {"name": TRAINER_CONTAINER, "volumeMounts": [dict(m) for m in template.volume_mounts]}
        ]
    if template.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in template.image_pull_secrets]
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    pod_template: dict[str, Any] = {
        "metadata": {
            "labels": {**meta_labels, "sidecar.istio.io/inject": "false"},
            "annotations": {"sidecar.istio.io/inject": "false"},
        },
        "spec": pod_spec,
    }
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [{"name": TRAINER_CONTAINER, "template": {"spec": {"template": pod_template}}}]
                }
            }
        },
    }
    metadata: dict[str, Any] = {"name": request.name, "labels": meta_labels}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "runtimeRef": {"name": request.runtime, "apiGroup": GROUP, "kind": request.runtime_kind},
            "trainer": trainer,
            "runtimePatches": [patch],
        },
    }


def rank0_selector(name: str) -> str:
    """The label selector of the rank-0 pod of TrainJob ``name`` (its JobSet's ``node`` job, completion index 0)."""
    return f"{JOBSET_NAME_LABEL}={name},{REPLICATED_JOB_LABEL}={TRAINER_CONTAINER},{COMPLETION_INDEX_LABEL}=0"


# --------------------------------------------------------------------------------------------------- API
def kube_clients(context: str = ""):
    """``(CustomObjectsApi, CoreV1Api)`` sharing one client: the pod's service account in a cluster
    (``KUBERNETES_SERVICE_HOST`` set), else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``; ``context`` or
    its current one).

    Raises:
        TrainJobError: neither is available or the kubeconfig is unusable.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api_client = client.ApiClient(cfg)
        else:  # the file is passed explicitly: the client reads $KUBECONFIG only once, when it is imported
            api_client = config.new_client_from_config(
                config_file=os.environ.get("KUBECONFIG") or None, context=context or None, persist_config=False
            )
    except (ConfigException, OSError) as exc:
        tried = (
            "the pod's service account (KUBERNETES_SERVICE_HOST is set)"
            if os.environ.get("KUBERNETES_SERVICE_HOST")
            else f"the kubeconfig {os.environ.get('KUBECONFIG', '~/.kube/config')}"
        )
        raise TrainJobError(f"no usable Kubernetes configuration: {tried} failed: {exc}") from None
    return client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)


def _call(fn: Callable[..., Any], *args: Any, attempts: int = 5, **kwargs: Any) -> Any:
    """:func:`alpr.kubeflow.kube_api.call`, at most five attempts by default."""
    return kube_api.call(fn, *args, attempts=attempts, **kwargs)


def _conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The TrainJob's conditions whose status is True, by type."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conditions if str(c.get("status")) == "True"}


def _terminal(obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``("Failed", condition)`` or ``("Complete", condition)`` when the TrainJob has ended, else None."""
    current = _conditions(obj)
    for kind in ("Failed", "Complete"):
        if kind in current:
            return kind, current[kind]
    return None


def _progress(obj: Mapping[str, Any]) -> str:
    jobs = (obj.get("status") or {}).get("jobsStatus") or []
    parts = [
        f"{j.get('name')}: {j.get('active', 0)} active, {j.get('ready', 0)} ready, "
        f"{j.get('succeeded', 0)} succeeded, {j.get('failed', 0)} failed"
        for j in jobs
    ]
    current = [t for t in _conditions(obj) if t]
    if current:
        parts.append(f"conditions: {', '.join(current)}")
    return "; ".join(parts) or "pending"


def _parse_ts(text: str) -> tuple[datetime, int] | None:
    """A kubelet log timestamp (RFC 3339 with up to 9 fraction digits, ``Z``) as (second, nanoseconds)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    second = datetime.fromisoformat(match[1] + zone)
    return second, int((match[2] or "0").ljust(9, "0"))


class _RankZeroLog:
    """Echoes the new log lines of a TrainJob's rank-0 pod (container ``node``) each time :meth:`poll` is called.

    The log is read with the kubelet's timestamps; a line whose timestamp is not after the last one echoed (or, at
    the same timestamp, was echoed already) is skipped, so each line appears once; ``sinceSeconds`` keeps each read
    short. A new rank-0 pod (a restarted JobSet) starts over. Errors are logged, never raised: the logs are a
    convenience, the TrainJob's conditions decide.
    """

    def __init__(self, core_api, namespace: str, name: str, echo: Callable[[str], None]) -> None:
        self.core_api, self.namespace, self.name, self.echo = core_api, namespace, name, echo
        self.pod: str | None = None
        self.last: tuple[datetime, int] | None = None
        self.same = 0  # lines echoed at timestamp ``last``

    def _rank0_pod(self) -> str | None:
        # one attempt per poll (the next poll tries again): a flaky log read must not hold up the following
        pods = _call(
            self.core_api.list_namespaced_pod, self.namespace, label_selector=rank0_selector(self.name), attempts=1
        )
        items = [
            p
            for p in pods.items
            if (p.metadata.labels or {}).get(JOBSET_NAME_LABEL) == self.name
            and (p.metadata.labels or {}).get(COMPLETION_INDEX_LABEL) == "0"
        ]
        if not items:
            return None
        epoch = datetime.min.replace(tzinfo=UTC)
        items.sort(key=lambda p: (p.metadata.creation_timestamp or epoch, p.metadata.name))
        return items[-1].metadata.name

    def poll(self) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            pod = self._rank0_pod()
            if pod is None:
                return
            if pod != self.pod:
                self.pod, self.last, self.same = pod, None, 0
                self.echo(f"[{self.name}] logs of rank 0: pod {pod}")
            kwargs: dict[str, Any] = {"container": TRAINER_CONTAINER, "timestamps": True}
            if self.last is None:
                kwargs["tail_lines"] = FIRST_LOG_LINES
            else:
                behind = datetime.now(UTC) - self.last[0]
                kwargs["since_seconds"] = max(1, int(behind / timedelta(seconds=1)) + 10)
            # the raw body: the client would parse a log that happens to be JSON
            response = _call(
                self.core_api.read_namespaced_pod_log, pod, self.namespace, attempts=1, _preload_content=False, **kwargs
            )
            text = response.data.decode("utf-8", "replace")
        except ApiException as exc:
            # 400: the container is not running yet; 404: the pod went away between the list and the read
            log.debug("no log of the rank-0 pod of %s/%s yet: %s %s", self.namespace, self.name, exc.status, exc.reason)
            return
        except (HTTPError, ConnectionError) as exc:
            log.warning("could not read the rank-0 log of %s/%s: %s", self.namespace, self.name, exc)
            return
        self._echo_new(text)

    def _echo_new(self, text: str) -> None:
        at_last = 0
        for line in text.splitlines():
            stamp, _, message = line.partition(" ")
            ts = _parse_ts(stamp)
            if ts is None:  # no timestamp (not the kubelet's format): echo it as it is
                self.echo(line)
                continue
            if self.last is not None and ts < self.last:
                continue
            if self.last is not None and ts == self.last:
                at_last += 1
                if at_last <= self.same:
                    continue
                self.same += 1
            else:
                self.last, self.same, at_last = ts, 1, 1
            self.echo(message)


@dataclass(frozen=True)
class TrainJobOutcome:
    """How a followed TrainJob ended.

    Attributes:
        name, namespace: the TrainJob.
        condition: ``Complete``.
        reason, message: the condition's (the JobSet's, e.g. ``AllJobsCompleted``).
        duration_s: seconds from the start of :func:`run_trainjob` to the end seen (wall clock).
    """

    name: str
    namespace: str
    condition: str
    reason: str
    message: str
    duration_s: float


@contextlib.contextmanager
def _sigterm_raises(what: str) -> Iterator[Callable[[], None]]:
    """While inside: SIGTERM raises :class:`TrainJobCancelled` (main thread only; elsewhere nothing changes).
    Yields a function that ignores further SIGTERMs (while cleaning up). The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def cancelled(signum: int, frame: Any) -> None:
        raise TrainJobCancelled(f"{what}: cancelled (signal {signal.Signals(signum).name})")

    previous = signal.signal(signal.SIGTERM, cancelled)
    try:
        yield lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _delete(custom_api, namespace: str, name: str, echo: Callable[[str], None]) -> None:
    """Delete the TrainJob and, in the background, its JobSet and pods; a failure is echoed, not raised (the error
    being handled matters more)."""
    from kubernetes.client.exceptions import ApiException

    try:
        _call(
            custom_api.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            attempts=3,
            propagation_policy="Background",
        )
        echo(f"deleted TrainJob {namespace}/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return
        echo(
            f"could not delete TrainJob {namespace}/{name} ({exc.status} {exc.reason}): delete it with "
            f"`kubectl -n {namespace} delete trainjob {name}`"
        )
    except Exception as exc:  # reported, the original error is re-raised by the caller
        echo(
            f"could not delete TrainJob {namespace}/{name} ({exc}): delete it with "
            f"`kubectl -n {namespace} delete trainjob {name}`"
        )


def _is_ours(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/part-of") == "alpr" and labels.get("app.kubernetes.io/component") == "training"


def _exists_ours(custom_api, body: Mapping[str, Any]) -> bool:
    """Whether the TrainJob of ``body`` is on the cluster and this project's (False when that cannot be read)."""
    meta = body["metadata"]
    try:
        return _is_ours(
            _call(
                custom_api.get_namespaced_custom_object,
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                attempts=2,
            )
        )
    except Exception:  # not known to be there: nothing to delete
        return False


def _create_or_adopt(custom_api, body: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Create ``body``; when a TrainJob of that name exists already and is this project's training (an earlier
    attempt of the same step), follow that one instead.

    Raises:
        TrainJobError: Trainer's CRD is not installed (404), the account may not create TrainJobs (401/403), or the
            name belongs to a TrainJob that is not this project's training.
        kubernetes.client.ApiException: any other refusal (422: invalid, say).
    """
    from kubernetes.client.exceptions import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        _call(custom_api.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, body)
        echo(f"created TrainJob {namespace}/{name}")
        return
    except ApiException as exc:
        if exc.status == 404:
            raise TrainJobError(
                f"the cluster serves no {GROUP}/{VERSION} {PLURAL} in namespace {namespace!r}: is Kubeflow Trainer "
                "(v2) installed, and does the namespace exist?"
            ) from None
        if exc.status in (401, 403):
            raise TrainJobError(
                f"not allowed to create TrainJobs in namespace {namespace!r} ({exc.reason}): grant the step's "
                "service account create/get/delete on trainjobs.trainer.kubeflow.org and get/list on pods, pods/log"
            ) from None
        if exc.status != 409:
            raise
    existing = _call(custom_api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
    if not _is_ours(existing):
        raise TrainJobError(
            f"TrainJob {namespace}/{name} exists and is not an ALPR training (labels "
            f"{(existing.get('metadata') or {}).get('labels')}): delete it or choose another name"
        )
    echo(f"TrainJob {namespace}/{name} exists already (an earlier attempt of this step): following it")


def run_trainjob(
    request: TrainJobRequest,
    *,
    namespace: str | None = None,
    custom_api=None,
    core_api=None,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    template: PodTemplate | None = None,
    labels: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> TrainJobOutcome:
    """Run ``request`` as a TrainJob and follow it to its end.

    Creates the TrainJob (:func:`build_trainjob`; a TrainJob of the same name from an earlier attempt of this step
    is followed instead, nothing new is created), echoes a ``kubectl logs -f`` command once, then polls its status
    every ``poll_s`` seconds, echoing a progress line when the child jobs' counts change and the rank-0 pod's new
    log lines. While following, in the main thread, SIGTERM raises :class:`TrainJobCancelled` (the previous handler
    is restored afterwards). On any exception other than the TrainJob's own failure -- SIGTERM, KeyboardInterrupt,
    the timeout, an API error -- the TrainJob is deleted (its JobSet and pods in the background) and the exception
    propagates; a failed TrainJob is kept for its logs.

    Args:
        request: what to run.
        namespace: where (default: the pod's own namespace, else ``default``).
        custom_api, core_api: ``CustomObjectsApi`` and ``CoreV1Api`` (default: :func:`kube_clients`).
        poll_s: seconds between polls.
        timeout_s: give up (and delete the TrainJob) after this many seconds; None: wait as long as it takes.
        template: what the pods take over (default: :func:`step_pod_template` of this pod).
        labels: more labels of the TrainJob and its pods (:func:`build_trainjob`).
        echo: where progress and log lines go (one string per line).

    Returns:
        the :class:`TrainJobOutcome` of a ``Complete`` TrainJob.

    Raises:
        TrainJobFailed: the ``Failed`` condition, with its reason and message.
        TrainJobCancelled: SIGTERM while following. TrainJobTimeout: ``timeout_s`` passed.
        TrainJobError: no cluster configuration, Trainer not installed, not allowed, the name taken by something
            else, or the TrainJob deleted by someone else.
        kubernetes.client.ApiException, urllib3.exceptions.HTTPError: the API refused or stayed unreachable.
    """
    from kubernetes.client.exceptions import ApiException

    start = time.monotonic()
    if custom_api is None or core_api is None:
        custom, core = kube_clients()
        custom_api, core_api = custom_api or custom, core_api or core
    namespace = namespace or _own_namespace() or "default"
    if template is None:
        template = step_pod_template(core_api, namespace)
    body = build_trainjob(request, template, labels=labels, namespace=namespace)
    name = request.name
    what = f"TrainJob {namespace}/{name}"
    deadline = None if timeout_s is None else start + timeout_s
    logs = _RankZeroLog(core_api, namespace, name, echo)
    owned: bool | None = None  # None: while creating (a cancel then deletes it only if it is there and ours)
    with _sigterm_raises(what) as ignore_sigterm:
        try:
            _create_or_adopt(custom_api, body, echo)
            owned = True
            echo(f"follow its logs: kubectl -n {namespace} logs -f -l {rank0_selector(name)} -c {TRAINER_CONTAINER}")
            last_progress = None
            while True:
                try:
                    obj = _call(custom_api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
                except ApiException as exc:
                    if exc.status == 404:
                        owned = False
                        raise TrainJobError(f"{what} no longer exists (deleted by someone else?)") from None
                    raise
                progress = _progress(obj)
                if progress != last_progress:
                    echo(f"[{name}] {progress}")
                    last_progress = progress
                logs.poll()
                ended = _terminal(obj)
                if ended is not None:
                    kind, condition = ended
                    owned = False  # ended: nothing left to delete on the way out
                    if kind == "Failed":
                        raise TrainJobFailed(
                            condition.get("reason") or "Failed",
                            condition.get("message") or "",
                            name=name,
                            namespace=namespace,
                            hint=f"logs: kubectl -n {namespace} logs -l {rank0_selector(name)} -c {TRAINER_CONTAINER};"
                            f" the TrainJob is kept until `kubectl -n {namespace} delete trainjob {name}`",
                        )
                    echo(f"{what} {kind}: {condition.get('reason', '')} {condition.get('message', '')}".rstrip())
                    return TrainJobOutcome(
                        name=name,
                        namespace=namespace,
                        condition=kind,
                        reason=condition.get("reason") or "",
                        message=condition.get("message") or "",
                        duration_s=time.monotonic() - start,
                    )
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise TrainJobTimeout(f"{what} did not finish within {timeout_s:g} s (now: {progress})")
                time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - now)))
        except BaseException as exc:
            ignore_sigterm()
            if owned or (owned is None and not isinstance(exc, TrainJobError) and _exists_ours(custom_api, body)):
                echo(f"{what}: {type(exc).__name__}; deleting it")
                _delete(custom_api, namespace, name, echo)
            raise
