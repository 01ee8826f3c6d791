"""KServe: the InferenceService that serves a model, and creating or patching it through the Kubernetes API.

:func:`build_inference_service` makes the ``serving.kserve.io/v1beta1`` resource: a custom predictor container
``kserve-container`` running the serving image's ``python -m alpr.serving --model <storage uri> --http-port 8080``,
which fetches the model itself from ``gs://`` (or reads it from a volume mounted into the predictor, such as the
workspace PVC): no KServe storage initializer, no credentials in the manifest (the service account's workload
identity or a mounted key grant the bucket read). :func:`apply_inference_service` creates it, or merge-patches the
existing one (:func:`model_patch`), through the ``kubernetes`` client's ``CustomObjectsApi``
(:func:`kube_api_client`: the in-cluster service account when running in a pod, else the kubeconfig), retrying
throttled and server-side failures. A patch changes only what names the model -- the ``kserve-container``'s
``args`` and this project's annotations -- and keeps what the Helm chart / kustomize manifests configured
(image, resources, replicas, volumes, credentials, deployment mode).

:class:`DeploySettings` (``ALPR_*``) says where and how; the decision whether to deploy is the Deploy step's
(:mod:`alpr.steps.deploy`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_PREFIX",
    "CONTAINER_NAME",
    "DEFAULT_EIR_SPLIT",
    "DeployError",
    "DeploySettings",
    "LOCAL_TARGET",
    "SERVING_PORT",
    "apply_inference_service",
    "build_inference_service",
    "describe_error",
    "format_eir",
    "kube_api_client",
    "model_annotations",
    "model_patch",
    "readable_by_predictor",
]

#: The InferenceService resource (KServe).
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, ISVC_KIND = (
    "serving.kserve.io",
    "v1beta1",
    "inferenceservices",
    "InferenceService",
)
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
#: Split whose EIR the Deploy decision compares and the annotations name (the held-out one, recorded by Test).
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
            raise ValueError(
                f"ALPR_ISVC_NAME {value!r} is not a valid InferenceService name (lower-case letters, "
                "digits and '-', starting with a letter, at most 63 characters)"
            )
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
    def _check_replicas(self) -> DeploySettings:
        if self.serving_min_replicas > self.serving_max_replicas:
            raise ValueError(
                f"ALPR_SERVING_MIN_REPLICAS ({self.serving_min_replicas}) is above "
                f"ALPR_SERVING_MAX_REPLICAS ({self.serving_max_replicas})"
            )
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


def format_eir(eir: float | None) -> str:
    """An EIR as shown in annotations, reasons and Markdown: 4 decimals, or ``n/a`` for None."""
    return "n/a" if eir is None else f"{eir:.4f}"


def model_annotations(
    *, model_uri: str, model_id: int, eir: float | None, run: str | None, split: str = DEFAULT_EIR_SPLIT
) -> dict[str, str]:
    """The annotations that say which model an InferenceService serves (the keys start with
    :data:`ANNOTATION_PREFIX`; values are strings, EIR with 4 decimals or ``n/a``)."""
    return {
        f"{ANNOTATION_PREFIX}/model-id": str(model_id),
        f"{ANNOTATION_PREFIX}/model-uri": model_uri,
        f"{ANNOTATION_PREFIX}/eir": format_eir(eir),
        f"{ANNOTATION_PREFIX}/eir-split": split,
        f"{ANNOTATION_PREFIX}/run": run or "",
    }


def build_inference_service(
    settings: DeploySettings,
    *,
    model_uri: str,
    model_id: int,
    eir: float | None,
    run: str | None = None,
    split: str = DEFAULT_EIR_SPLIT,
) -> dict[str, Any]:
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
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": SERVING_PORT},
            "initialDelaySeconds": 60,
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
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
        container["volumeMounts"] = [{"name": "workspace", "mountPath": settings.serving_pvc_mount, "readOnly": True}]
        predictor["volumes"] = [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": settings.serving_pvc, "readOnly": True}}
        ]
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
        raise DeployError(
            f"InferenceService {meta.get('namespace')}/{meta.get('name')} has no predictor container "
            f"{CONTAINER_NAME!r} (containers: {names}): it was not made for this model server; "
            "delete it or set ALPR_ISVC_NAME to another name"
        )
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
        return config.new_client_from_config(
            config_file=os.environ.get("KUBECONFIG") or None, context=context or None, persist_config=False
        )
    except (ConfigException, OSError) as exc:
        raise DeployError(
            f"no usable Kubernetes configuration (not in a cluster, and the kubeconfig "
            f"{os.environ.get('KUBECONFIG', '~/.kube/config')} failed: {exc})"
        ) from None


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

    for attempt in Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(_retryable),
        reraise=True,
        before_sleep=before_sleep_log(log, logging.WARNING),
    ):
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
            raise DeployError(
                f"the predictor of InferenceService {namespace}/{name} cannot read {model_uri!r}: "
                "a local path outside every volume it mounts (store models in a gs:// bucket, or "
                "set ALPR_SERVING_PVC to the PVC that holds them)"
            )
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


def describe_error(exc: BaseException) -> str:
    """One line about a failure (of :func:`apply_inference_service`, say), with the Kubernetes API server's own
    message when there is one: ``Kubernetes API answered HTTP <status> <reason>: <message>``, else
    ``<exception type>: <exception>``."""
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
