"""The Deploy step: serve the newly selected model when it beats, on EIR, the model being served.

The decision (:func:`decide`) compares the new model's EIR with the EIR of the model *currently served* at the
target, both read from the metadata store (``evaluations``, by default on the held-out ``test`` split): the
currently served model is the latest ``deployed`` row of the ``deployments`` table for that target. The new model
is deployed when nothing is served yet, or when its EIR is higher by more than ``min_improvement`` (default 0:
strictly higher); otherwise it is skipped. Every decision, with a reason that quotes both EIR figures, is recorded
in ``deployments`` (:meth:`alpr.metadata.MetadataTx.add_deployment`) and returned.

Two targets (``ALPR_DEPLOY_TARGET``):

- ``local`` (default; no cluster): the decision is recorded and the command that serves the model on this machine
  is returned (``make serve MODEL=<uri>`` / ``python -m alpr.serving --model <uri>``).
- ``kubernetes``: the KServe InferenceService (``serving.kserve.io/v1beta1``; :func:`build_inference_service`) is
  created, or merge-patched when it exists, through the ``kubernetes`` client's ``CustomObjectsApi``
  (:func:`apply_inference_service`); the in-cluster service account when running in a pod, else the kubeconfig.
  A patch changes only what names the model -- the ``kserve-container``'s ``args`` and this project's
  annotations -- and keeps what the Helm chart / kustomize manifests configured (image, resources, replicas,
  volumes, credentials, deployment mode). A failing API call is recorded as ``failed`` (with the error) and
  raised as :class:`DeployError`.

The InferenceService runs the serving image's ``python -m alpr.serving --model <storage uri> --http-port 8080``
(a custom predictor container named ``kserve-container``), which fetches the model itself from ``gs://`` (or
reads it from a volume mounted into the predictor, such as the workspace PVC): no KServe storage initializer, no
credentials in the manifest (the service account's workload identity or a mounted key grant the bucket read).

CLI::

    python -m alpr.deploy [--model latest|ID] [--target local|kubernetes] [--min-eir-improvement X] [--run NAME]
    python -m alpr.deploy --model latest --manifest     # print the InferenceService YAML, change nothing
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alpr.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "CONTAINER_NAME",
    "Decision",
    "DeployError",
    "DeploySettings",
    "LOCAL_TARGET",
    "apply_inference_service",
    "build_inference_service",
    "decide",
    "decision_markdown",
    "deploy_model",
    "deploy_step",
    "kube_api_client",
    "main",
    "model_annotations",
    "model_patch",
    "readable_by_predictor",
    "serve_commands",
]

#: The InferenceService resource (KServe).
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, ISVC_KIND = "serving.kserve.io", "v1beta1", "inferenceservices", \
    "InferenceService"
#: KServe's name for the predictor's main container (the one that receives the traffic).
CONTAINER_NAME = "kserve-container"
#: The port the model server listens on in the container (KServe's default).
SERVING_PORT = 8080
#: The deployment target of a run without a cluster.
LOCAL_TARGET = "local"
#: Serving image (the project's Dockerfile, serving target); ``ALPR_SERVING_IMAGE`` overrides it.
DEFAULT_SERVING_IMAGE = "ghcr.io/alpr-kubeflow/alpr-serving:0.1.0-python3.11"
#: Prefix of the annotations and labels this project puts on the InferenceService.
ANNOTATION_PREFIX = "alpr-kubeflow.github.io"
#: Where a pod finds its own namespace.
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Split whose EIR the decision compares (the held-out one, recorded by the Test step).
DEFAULT_EIR_SPLIT = "test"
#: HTTP statuses of the Kubernetes API worth retrying (throttled, server-side trouble).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Timeout of one Kubernetes API request, in seconds.
API_TIMEOUT_S = 30

# RFC 1035 label (an InferenceService name becomes a DNS name) and RFC 1123 label (a namespace).
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class DeployError(RuntimeError):
    """Deploying failed (API error, no cluster configuration, a model the cluster cannot read); the message says
    what, and the failure is recorded in the metadata store when it happened while deploying."""


class DeploySettings(BaseSettings):
    """Where and how the Deploy step serves a model; every field is read from ``ALPR_<FIELD>`` (upper case).

    Attributes:
        deploy_target: ``local`` (record the decision, print the serve command) or ``kubernetes``.
        isvc_name: the InferenceService's name (an RFC 1035 label; default ``alpr``, the served model's name).
        isvc_namespace: its namespace; empty: the pod's own namespace in a cluster, else ``default``.
        serving_image: the predictor container's image (the project's serving image).
        serving_service_account: the predictor pods' service account (bucket read access); empty: the
            namespace's default.
        serving_min_replicas, serving_max_replicas: KServe autoscaling bounds (0 min replicas: scale to zero).
        serving_pvc: a PersistentVolumeClaim mounted read-only at ``serving_pvc_mount`` (models on the workspace
            PVC, ``ALPR_STORAGE_URI=/mnt/alpr/storage``); empty: none.
        serving_deployment_mode: KServe's ``serving.kserve.io/deploymentMode`` annotation on creation
            (``RawDeployment`` as in the Helm chart; empty: the cluster's default).
        serving_cpu_request, serving_cpu_limit, serving_memory_request, serving_memory_limit: Kubernetes
            quantities of the predictor container (defaults fit one model copy: about 0.75 GB RSS measured).
        kube_context: kubeconfig context to use outside a cluster (empty: the current one).
        deploy_api_attempts: attempts of each Kubernetes API call on a retryable failure (429, 5xx, connection).
    """

    model_config = SettingsConfigDict(env_prefix="ALPR_", extra="ignore")

    deploy_target: Literal["local", "kubernetes"] = LOCAL_TARGET
    isvc_name: str = "alpr"
    isvc_namespace: str = ""
    serving_image: str = DEFAULT_SERVING_IMAGE
    serving_service_account: str = "alpr-serving"
    serving_min_replicas: int = Field(1, ge=0)
    serving_max_replicas: int = Field(3, ge=1)
    serving_pvc: str = ""
    serving_pvc_mount: str = "/mnt/alpr"
    serving_deployment_mode: str = "RawDeployment"
    serving_cpu_request: str = "1"
    serving_cpu_limit: str = "2"
    serving_memory_request: str = "1Gi"
    serving_memory_limit: str = "2Gi"
    kube_context: str = ""
    deploy_api_attempts: int = Field(4, ge=1, le=10)

    @field_validator("isvc_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _DNS_1035.match(value):
            raise ValueError(f"ALPR_ISVC_NAME {value!r} is not a valid InferenceService name (lower-case letters, "
                             "digits and '-', starting with a letter, at most 63 characters)")
        return value

    @field_validator("isvc_namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if value and not _DNS_1123.match(value):
            raise ValueError(f"ALPR_ISVC_NAMESPACE {value!r} is not a valid namespace name")
        return value

    @field_validator("serving_image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if not value or value != value.strip() or " " in value:
            raise ValueError(f"ALPR_SERVING_IMAGE {value!r} is not an image reference")
        return value

    @model_validator(mode="after")
    def _check_replicas(self) -> "DeploySettings":
        if self.serving_min_replicas > self.serving_max_replicas:
            raise ValueError(f"ALPR_SERVING_MIN_REPLICAS ({self.serving_min_replicas}) is above "
                             f"ALPR_SERVING_MAX_REPLICAS ({self.serving_max_replicas})")
        return self

    def namespace(self) -> str:
        """The InferenceService's namespace: the setting, else the pod's own namespace, else ``default``."""
        if self.isvc_namespace:
            return self.isvc_namespace
        if POD_NAMESPACE_FILE.is_file():
            own = POD_NAMESPACE_FILE.read_text().strip()
            if own:
                return own
        return "default"

    def target_name(self) -> str:
        """The target as recorded in the metadata store: ``local`` or ``<namespace>/<InferenceService name>``."""
        return LOCAL_TARGET if self.deploy_target == LOCAL_TARGET else f"{self.namespace()}/{self.isvc_name}"


# --------------------------------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """Whether to deploy the new model, and why.

    Attributes:
        deploy: True to serve the new model.
        reason: one human-readable sentence quoting both EIR figures.
        new_eir: the new model's EIR (None when it has none: NaN).
        served_eir: the served model's EIR (None when nothing is served or it has no EIR).
        served_model_id: the served model's id (None when nothing is served).
    """

    deploy: bool
    reason: str
    new_eir: float | None
    served_eir: float | None
    served_model_id: int | None


def _fmt(eir: float | None) -> str:
    return "n/a" if eir is None else f"{eir:.4f}"


def decide(new_model_id: int, new_eir: float | None, served_model_id: int | None, served_eir: float | None, *,
           min_improvement: float = 0.0, split: str = DEFAULT_EIR_SPLIT, target: str = LOCAL_TARGET) -> Decision:
    """Decide whether model ``new_model_id`` replaces the one served at ``target``.

    Deploy when nothing is served, when the served model has no EIR to compare with, or when
    ``new_eir - served_eir > min_improvement``; skip when the new model is the one served, has no EIR (NaN), or
    does not improve enough. EIR is a fraction in [0, 1] (PLATE_SPEC.md).

    Raises:
        ValueError: ``min_improvement`` is negative or not finite, or an EIR is outside [0, 1].
    """
    if not math.isfinite(min_improvement) or min_improvement < 0:
        raise ValueError(f"min_improvement must be a finite number >= 0, got {min_improvement}")
    for what, value in (("new_eir", new_eir), ("served_eir", served_eir)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{what} must be in [0, 1] (or None), got {value}")
    new = f"model {new_model_id} ({split} EIR {_fmt(new_eir)})"

    def decision(deploy: bool, reason: str) -> Decision:
        return Decision(deploy, reason, new_eir, served_eir, served_model_id)

    if served_model_id is None:
        return decision(new_eir is not None,
                        f"nothing served at {target} yet: deploying {new}" if new_eir is not None else
                        f"{new} has no EIR (NaN): not deploying it, and nothing is served at {target}")
    served = f"served model {served_model_id} ({split} EIR {_fmt(served_eir)})"
    if served_model_id == new_model_id:
        return decision(False, f"{new} is already served at {target}")
    if new_eir is None:
        return decision(False, f"{new} has no EIR (NaN): {served} stays")
    if served_eir is None:
        return decision(True, f"{served} has no EIR to compare with: deploying {new}")
    gain = new_eir - served_eir
    if gain > min_improvement:
        return decision(True, f"{new} beats {served} by {gain:+.4f} (more than the minimum improvement "
                              f"{min_improvement:.4f}): deploying it")
    return decision(False, f"{new} does not beat {served} by more than {min_improvement:.4f} "
                           f"(difference {gain:+.4f}): model {served_model_id} stays")


# --------------------------------------------------------------------------------------------------- Kubernetes


def model_annotations(*, model_uri: str, model_id: int, eir: float | None, run: str | None,
                      split: str = DEFAULT_EIR_SPLIT) -> dict[str, str]:
    """The annotations that say which model an InferenceService serves (the keys start with
    :data:`ANNOTATION_PREFIX`; values are strings, EIR with 4 decimals or ``n/a``)."""
    return {
        f"{ANNOTATION_PREFIX}/model-id": str(model_id),
        f"{ANNOTATION_PREFIX}/model-uri": model_uri,
        f"{ANNOTATION_PREFIX}/eir": _fmt(eir),
        f"{ANNOTATION_PREFIX}/eir-split": split,
        f"{ANNOTATION_PREFIX}/run": run or "",
    }


def build_inference_service(settings: DeploySettings, *, model_uri: str, model_id: int, eir: float | None,
                            run: str | None = None, split: str = DEFAULT_EIR_SPLIT) -> dict[str, Any]:
    """The InferenceService (``serving.kserve.io/v1beta1``) that serves ``model_uri`` with the project's server.

    A custom predictor: one container ``kserve-container`` running ``--model <model_uri> --http-port 8080`` in
    ``settings.serving_image`` (whose entry point is ``python -m alpr.serving``), port 8080, the resources,
    readiness (``/v2/models/alpr/ready``: 200 once the model is loaded) and liveness (``/v2/health/live``) probes,
    ``minReplicas`` / ``maxReplicas``, the service account, a non-root security context, and the PVC of
    ``settings`` when one is set; the same shape as ``manifests/base/inferenceservice.yaml``. Annotations carry the
    model id, URI, EIR and run (:func:`model_annotations`). No secret goes into it.

    Returns:
        the resource as a JSON-serialisable dict (camelCase fields, as the API server takes it).
    """
    annotations = model_annotations(model_uri=model_uri, model_id=model_id, eir=eir, run=run, split=split)
    if settings.serving_deployment_mode:
        annotations["serving.kserve.io/deploymentMode"] = settings.serving_deployment_mode
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.serving_image,
        "args": ["--model", model_uri, "--http-port", str(SERVING_PORT)],
        "ports": [{"name": "http1", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        # a writable cache for the model downloaded from gs:// (the image's user is not root)
        "env": [{"name": "ALPR_CACHE_DIR", "value": "/tmp/alpr-cache"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": {
            "requests": {"cpu": settings.serving_cpu_request, "memory": settings.serving_memory_request},
            "limits": {"cpu": settings.serving_cpu_limit, "memory": settings.serving_memory_limit},
        },
        "readinessProbe": {
            "httpGet": {"path": "/v2/models/alpr/ready", "port": SERVING_PORT},
            "initialDelaySeconds": 5, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": SERVING_PORT},
            "initialDelaySeconds": 60, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4,
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    predictor: dict[str, Any] = {
        "minReplicas": settings.serving_min_replicas,
        "maxReplicas": settings.serving_max_replicas,
        # the serving image's user (Dockerfile)
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "containers": [container],
    }
    if settings.serving_service_account:
        predictor["serviceAccountName"] = settings.serving_service_account
    if settings.serving_pvc:
        container["volumeMounts"] = [{"name": "workspace", "mountPath": settings.serving_pvc_mount,
                                      "readOnly": True}]
        predictor["volumes"] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": settings.serving_pvc,
                                                                               "readOnly": True}}]
    return {
        "apiVersion": f"{ISVC_GROUP}/{ISVC_VERSION}",
        "kind": ISVC_KIND,
        "metadata": {
            "name": settings.isvc_name,
            "namespace": settings.namespace(),
            "labels": {"app.kubernetes.io/name": "alpr", "app.kubernetes.io/component": "serving"},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def model_patch(existing: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that points the ``existing`` InferenceService at ``body``'s model, and changes nothing else.

    Only the ``kserve-container``'s ``args`` (the model URI) and this project's annotations change; the other
    containers, and every other field of that container (image, env, volume mounts, resources, probes), are sent
    back as they are (a merge patch replaces a list as a whole). The ``resourceVersion`` read is sent along: the API
    server refuses the patch (409) when the object changed in between.

    Raises:
        DeployError: ``existing`` has no container named ``kserve-container`` (it is not a custom predictor of this
            project: it uses a built-in runtime, say).
    """
    containers = existing.get("spec", {}).get("predictor", {}).get("containers") or []
    names = [c.get("name") for c in containers]
    if CONTAINER_NAME not in names:
        meta = existing.get("metadata", {})
        raise DeployError(f"InferenceService {meta.get('namespace')}/{meta.get('name')} has no predictor container "
                          f"{CONTAINER_NAME!r} (containers: {names}): it was not made for this model server; "
                          "delete it or set ALPR_ISVC_NAME to another name")
    args = body["spec"]["predictor"]["containers"][0]["args"]
    patched = [{**c, "args": list(args)} if c.get("name") == CONTAINER_NAME else c for c in containers]
    mine = {k: v for k, v in body["metadata"]["annotations"].items() if k.startswith(f"{ANNOTATION_PREFIX}/")}
    metadata: dict[str, Any] = {"annotations": mine}
    if existing.get("metadata", {}).get("resourceVersion"):
        metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
    return {"metadata": metadata, "spec": {"predictor": {"containers": patched}}}


def readable_by_predictor(model_uri: str, isvc: dict[str, Any]) -> bool:
    """Whether the predictor of ``isvc`` can read ``model_uri``: a remote URI (``gs://``...), or a path inside a
    volume mounted into its ``kserve-container``."""
    if "://" in model_uri and not model_uri.startswith("file://"):
        return True
    path = Path(model_uri.removeprefix("file://"))
    for container in isvc.get("spec", {}).get("predictor", {}).get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            for mount in container.get("volumeMounts") or []:
                if path.is_absolute() and path.is_relative_to(mount.get("mountPath", "/nonexistent")):
                    return True
    return False


def kube_api_client(context: str = ""):
    """A ``kubernetes.client.ApiClient``: the pod's service account in a cluster, else the kubeconfig
    (``$KUBECONFIG`` or ``~/.kube/config``; ``context`` or its current context).

    Raises:
        DeployError: neither is available or the kubeconfig is unusable.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        # the file is passed explicitly: the client reads $KUBECONFIG only once, when it is imported
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None,
                                             context=context or None, persist_config=False)
    except (ConfigException, OSError) as exc:
        raise DeployError(f"no usable Kubernetes configuration (not in a cluster, and the kubeconfig "
                          f"{os.environ.get('KUBECONFIG', '~/.kube/config')} failed: {exc})") from None


def _retryable(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, HTTPError)  # connection refused / reset, timeouts


def _call(attempts: int, fn, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried with exponential back-off (0.5 s, 1 s, 2 s, ...; tenacity) on a
    retryable failure, at most ``attempts`` times; the last failure is raised."""
    from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt, wait_exponential

    for attempt in Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=0.5, max=8),
                            retry=retry_if_exception(_retryable), reraise=True,
                            before_sleep=before_sleep_log(log, logging.WARNING)):
        with attempt:
            return fn(*args, **kwargs, _request_timeout=API_TIMEOUT_S)
    raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover


def apply_inference_service(body: dict[str, Any], api_client=None, *, attempts: int = 4) -> str:
    """Create the InferenceService ``body``, or point the existing one at ``body``'s model (merge patch).

    Reads the object first: 404 → create ``body`` as it is; found → :func:`model_patch` (only the model's args
    and annotations change; ``application/merge-patch+json``). A conflict (409: created or changed concurrently)
    starts over, at most 3 times. The model URI must be readable by the predictor (:func:`readable_by_predictor`).

    Args:
        body: what :func:`build_inference_service` returns (``metadata.name`` / ``metadata.namespace`` set).
        api_client: a ``kubernetes.client.ApiClient`` (default: :func:`kube_api_client`).
        attempts: attempts of each call on a retryable failure (429, 5xx, connection errors; tenacity back-off).

    Returns:
        ``"created"`` or ``"patched"``.

    Raises:
        kubernetes.client.ApiException: the API refused a request (403 without RBAC, 422 invalid, ...).
        urllib3.exceptions.HTTPError: the API server was not reachable after ``attempts`` attempts.
        DeployError: the existing object is not this project's kind of predictor, the predictor cannot read the
            model URI, the object kept changing, or there is no Kubernetes configuration (``api_client`` None).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    model_uri = body["spec"]["predictor"]["containers"][0]["args"][1]
    api = client.CustomObjectsApi(api_client if api_client is not None else kube_api_client())
    where = (ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL)
    for _ in range(3):
        try:
            existing = _call(attempts, api.get_namespaced_custom_object, *where, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        target = existing if existing is not None else body
        if not readable_by_predictor(model_uri, target):
            raise DeployError(f"the predictor of InferenceService {namespace}/{name} cannot read {model_uri!r}: "
                              "a local path outside every volume it mounts (store models in a gs:// bucket, or "
                              "set ALPR_SERVING_PVC to the PVC that holds them)")
        try:
            if existing is None:
                _call(attempts, api.create_namespaced_custom_object, *where, body)
                return "created"
            _call(attempts, api.patch_namespaced_custom_object, *where, name, model_patch(existing, body))
            return "patched"
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.warning("InferenceService %s/%s changed concurrently (409); reading it again", namespace, name)
    raise DeployError(f"InferenceService {namespace}/{name} kept changing while it was being updated (3 conflicts)")


def _describe_error(exc: BaseException) -> str:
    """One line about a failure, with the API server's own message when there is one."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status is not None:
        message = ""
        if body:
            try:
                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                message = str(body)[:300]
        return f"Kubernetes API answered HTTP {status} {getattr(exc, 'reason', '') or ''}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------------- the step


def serve_commands(model_uri: str) -> list[str]:
    """The commands that serve ``model_uri`` on this machine (``make serve`` and the module itself)."""
    quoted = shlex.quote(model_uri)
    return [f"make serve MODEL={quoted}", f"python -m alpr.serving --model {quoted} --http-port {SERVING_PORT}"]


def _eir(reads, model_id: int, split: str) -> tuple[bool, float | None]:
    """(has an evaluation on ``split``, its EIR or None when NaN/missing) of the model's latest such evaluation."""
    on_split = [e for e in reads.evaluations(model_id) if e["split"] == split]
    if not on_split:
        return False, None
    value = on_split[-1]["metrics"].get("eir")
    return True, (None if value is None or not math.isfinite(float(value)) else float(value))


def deploy_model(settings: Settings, *, model_id: int | None = None, run_name: str | None = None,
                 min_improvement: float = 0.0, deploy_settings: DeploySettings | None = None,
                 split: str = DEFAULT_EIR_SPLIT, api_client=None) -> dict[str, Any]:
    """Decide whether to serve model ``model_id`` (default: the latest selected one), act, record, return.

    The decision reads and the row it writes are in one metadata transaction, together with the API call on a
    cluster: a failing call leaves a ``failed`` row (and nothing else) and raises.

    Args:
        settings: where the metadata store is.
        model_id: the newly selected model (None: :meth:`~alpr.metadata.MetadataStore.latest_selected_model`).
        run_name: the pipeline run deciding (recorded; must exist in the store), or None.
        min_improvement: how much higher the new EIR must be than the served one (>= 0; 0: strictly higher).
        deploy_settings: target, InferenceService name/namespace, image, resources (default: from ``ALPR_*``).
        split: the evaluation split whose EIR is compared (``test``: recorded by the Test step).
        api_client: a ``kubernetes.client.ApiClient`` for a ``kubernetes`` target (default: :func:`kube_api_client`).

    Returns:
        ``{"action": "deployed" | "skipped", "reason", "deployment_id", "target", "model_id", "model_uri",
        "new_eir", "served_eir", "served_model_id", "split", "serve_commands" (local target, else []),
        "inference_service": {"name", "namespace", "operation": "created" | "patched"} or None}``.

    Raises:
        alpr.metadata.NotFound: no model ``model_id`` / no selected model / no run ``run_name``.
        ValueError: the model has no evaluation on ``split``; a bad ``min_improvement``.
        DeployError: the deployment itself failed (recorded as ``failed`` first).
    """
    from alpr.metadata import SPLITS, MetadataStore, NotFound

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ds = deploy_settings or DeploySettings()
    store = MetadataStore(settings.db_url)
    store.create_schema()
    model = store.get_model(model_id) if model_id is not None else store.latest_selected_model()
    if model is None:
        raise NotFound(f"model id {model_id} does not exist in {store.url_for_display}" if model_id is not None
                       else f"no selected model in {store.url_for_display}: run the pipeline first")
    has_eval, new_eir = _eir(store, model["id"], split)
    if not has_eval:
        raise ValueError(f"model {model['id']} has no {split} evaluation in {store.url_for_display}: "
                         f"the Test step records it; run it before Deploy")
    target = ds.target_name()
    failure: BaseException | None = None
    service = None
    with store.transaction() as tx:
        served = tx.current_deployment(target)
        served_id = served["model_id"] if served else None
        served_eir = _eir(tx, served_id, split)[1] if served_id is not None else None
        decision = decide(model["id"], new_eir, served_id, served_eir, min_improvement=min_improvement,
                          split=split, target=target)
        action, reason = ("deployed" if decision.deploy else "skipped"), decision.reason
        if decision.deploy and ds.deploy_target != LOCAL_TARGET:
            try:
                body = build_inference_service(ds, model_uri=model["uri"], model_id=model["id"], eir=new_eir,
                                               run=run_name, split=split)
                operation = apply_inference_service(
                    body, api_client if api_client is not None else kube_api_client(ds.kube_context),
                    attempts=ds.deploy_api_attempts)
                service = {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"],
                           "operation": operation}
                reason += f"; InferenceService {target} {operation}"
            except Exception as exc:  # noqa: BLE001 - any failure of the action is recorded, then raised
                failure = exc
                action, reason = "failed", f"{reason}; FAILED: {_describe_error(exc)}"
        deployment_id = tx.add_deployment(model["id"], target, action, reason, new_eir=new_eir, served_eir=served_eir,
                                          served_model_id=served_id, storage_uri=model["uri"], run=run_name)
    log.info("deploy %s: %s (%s)", target, action, reason)
    if failure is not None:
        raise DeployError(f"deploying model {model['id']} to {target} failed (recorded as deployment "
                          f"{deployment_id}): {_describe_error(failure)}") from failure
    return {
        "action": action, "reason": reason, "deployment_id": deployment_id, "target": target,
        "model_id": model["id"], "model_uri": model["uri"], "new_eir": new_eir, "served_eir": served_eir,
        "served_model_id": served_id, "split": split,
        "serve_commands": serve_commands(model["uri"]) if ds.deploy_target == LOCAL_TARGET else [],
        "inference_service": service,
    }


def deploy_step(settings: Settings, *, model_dir: Path, run_name: str, target: str = "",
                min_improvement: float = 0.0, api_client=None) -> dict[str, Any]:
    """The pipeline's Deploy step: :func:`deploy_model` for the model Evaluate selected (``model_dir``'s lineage).

    Args:
        settings: the backends.
        model_dir: Evaluate's ``selected_model`` artifact (its ``lineage.json`` names the model id).
        run_name: the pipeline run.
        target: ``local`` or ``kubernetes``; empty: ``ALPR_DEPLOY_TARGET`` (default ``local``).
        min_improvement: see :func:`deploy_model`.

    Raises:
        ValueError: an unknown ``target``; see :func:`deploy_model` for the rest.
    """
    from alpr.steps import read_lineage

    lineage = read_lineage(model_dir)
    if "model_id" not in lineage:
        raise ValueError(f"{model_dir}/lineage.json has no model_id: not a model selected by Evaluate")
    overrides: dict[str, Any] = {}
    if target:
        if target not in ("local", "kubernetes"):
            raise ValueError(f"deploy target must be 'local' or 'kubernetes' (or empty for $ALPR_DEPLOY_TARGET), "
                             f"got {target!r}")
        overrides["deploy_target"] = target
    return deploy_model(settings, model_id=int(lineage["model_id"]), run_name=run_name,
                        min_improvement=min_improvement, deploy_settings=DeploySettings(**overrides),
                        api_client=api_client)


def decision_markdown(result: dict[str, Any]) -> str:
    """The decision as Markdown (the Deploy step's artifact in the KFP UI)."""
    rows = [
        ("decision", f"**{result['action']}**"),
        ("target", f"`{result['target']}`"),
        ("new model", f"{result['model_id']} (`{result['model_uri']}`)"),
        (f"new {result['split']} EIR", _fmt(result["new_eir"])),
        ("served model before", "none" if result["served_model_id"] is None else str(result["served_model_id"])),
        (f"served {result['split']} EIR", _fmt(result["served_eir"])),
    ]
    if result.get("inference_service"):
        isvc = result["inference_service"]
        rows.append(("InferenceService", f"`{isvc['namespace']}/{isvc['name']}` {isvc['operation']}"))
    lines = ["# Deploy", "", result["reason"], "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if result.get("serve_commands"):
        lines += ["", "Serve it on this machine:", "", "```bash", *result["serve_commands"], "```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m alpr.deploy", allow_abbrev=False,
                                description="Serve the selected model if it beats the served one on EIR.")
    p.add_argument("--model", default="latest", help="model id, or 'latest' (the latest selected; default)")
    p.add_argument("--target", choices=("local", "kubernetes"), default=None,
                   help="deployment target (default: $ALPR_DEPLOY_TARGET, else local)")
    p.add_argument("--min-eir-improvement", type=float, default=0.0,
                   help="how much higher the new EIR must be (default 0: strictly higher)")
    p.add_argument("--split", default=DEFAULT_EIR_SPLIT, help="evaluation split compared (default: test)")
    p.add_argument("--run", default=None, help="pipeline run to record the decision under (must exist)")
    p.add_argument("--manifest", action="store_true",
                   help="print the model's InferenceService as YAML and exit (no decision, nothing changed)")
    args = p.parse_args(argv)
    if args.model != "latest" and not args.model.isdigit():
        p.error(f"--model must be a model id or 'latest', got {args.model!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 deployed or skipped, 1 an error)."""
    import yaml

    from alpr.metadata import MetadataError, MetadataStore
    from alpr.settings import load_settings

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    model_id = None if args.model == "latest" else int(args.model)
    try:
        ds = DeploySettings(**({"deploy_target": args.target} if args.target else {}))
        if args.manifest:
            store = MetadataStore(settings.db_url)
            model = store.get_model(model_id) if model_id is not None else store.latest_selected_model()
            if model is None:
                print(f"error: no such model in {store.url_for_display}", file=sys.stderr)
                return 1
            eir = _eir(store, model["id"], args.split)[1]
            body = build_inference_service(ds, model_uri=model["uri"], model_id=model["id"], eir=eir,
                                           run=model["run"], split=args.split)
            print(yaml.safe_dump(body, sort_keys=False), end="")
            return 0
        result = deploy_model(settings, model_id=model_id, run_name=args.run, split=args.split,
                              min_improvement=args.min_eir_improvement, deploy_settings=ds)
    except (MetadataError, ValueError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result['action']}: {result['reason']}")
    for command in result["serve_commands"]:
        print(f"serve:  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
