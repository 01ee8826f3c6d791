"""KServe: the InferenceService that serves a model, and creating or patching it through the Kubernetes API.

The KServe way (KServe 0.20, ``serving.kserve.io``): the model server is the namespaced ``ServingRuntime``
:data:`RUNTIME_NAME` (``manifests/base/servingruntime.yaml``, ``charts/alpr/templates/servingruntime.yaml``): the
serving image's ``python -m alpr.serving --model_name={{.Name}} --model_dir=/mnt/models --http_port=8080`` for the
model format :data:`MODEL_FORMAT`. The InferenceService (:func:`build_inference_service`) names one model version
in ``spec.predictor.model.storageUri`` (:func:`storage_uri`: ``gs://``, ``s3://``, ``pvc://<claim>/<path>``...);
KServe's storage initializer downloads it to ``/mnt/models`` (a ``pvc://`` is mounted there instead), with the
predictor's service account or KServe's storage secret: the predictor itself holds no bucket or database
credentials. :func:`apply_inference_service` creates the InferenceService, or merge-patches the existing one
(:func:`model_patch`: only ``storageUri`` and this project's annotations change), through the ``kubernetes``
client's ``CustomObjectsApi`` (:func:`kube_api_client`), retrying throttled and server-side failures.

Where the Deploy step deploys (:data:`DEPLOY_TARGETS`, :func:`resolve_target`): ``local`` (record the decision,
print the serve command), ``kubernetes`` (the InferenceService), or ``auto``: ``$ALPR_DEPLOY_TARGET`` when it names
one of the two, else ``kubernetes`` inside a pod of a cluster (``KUBERNETES_SERVICE_HOST`` set, the test
:func:`kube_api_client` uses), else ``local``. :class:`DeploySettings` (``ALPR_*``) says where and how; the decision
whether to deploy is the Deploy step's (:mod:`alpr.steps.deploy`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alpr.kubeflow import kube_api
from alpr.kubeflow.platform import PlatformSettings

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_PREFIX",
    "AUTO_TARGET",
    "DEFAULT_EIR_SPLIT",
    "DEPLOY_TARGETS",
    "KUBERNETES_TARGET",
    "LOCAL_TARGET",
    "LOGGER_METADATA_HEADERS",
    "LOGGER_MODES",
    "MODEL_FORMAT",
    "RUNTIME_NAME",
    "SERVING_PORT",
    "DeployError",
    "DeploySettings",
    "apply_inference_service",
    "build_inference_service",
    "describe_error",
    "format_eir",
    "in_cluster",
    "kube_api_client",
    "logger_spec",
    "model_annotations",
    "model_patch",
    "resolve_target",
    "storage_uri",
]

#: The InferenceService resource (KServe).
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, ISVC_KIND = (
    "serving.kserve.io",
    "v1beta1",
    "inferenceservices",
    "InferenceService",
)
#: The ServingRuntime resource (KServe; same group).
RUNTIME_VERSION, RUNTIME_PLURAL = "v1alpha1", "servingruntimes"
#: The deployment target of a run without a cluster: record the decision, print the serve command.
LOCAL_TARGET = "local"
#: The deployment target that creates or patches the KServe InferenceService.
KUBERNETES_TARGET = "kubernetes"
#: ``kubernetes`` inside a cluster's pod, else ``local``, unless ``$ALPR_DEPLOY_TARGET`` names one (:func:`resolve_target`).
AUTO_TARGET = "auto"
#: Every value the ``deploy_target`` pipeline parameter, ``ALPR_DEPLOY_TARGET`` and ``alpr deploy --target`` take
#: (``""`` is also read as ``auto``, for runs submitted before ``auto`` existed).
DEPLOY_TARGETS = (AUTO_TARGET, LOCAL_TARGET, KUBERNETES_TARGET)
#: The namespaced ServingRuntime of the project's model server (manifests/base/servingruntime.yaml, the chart's).
RUNTIME_NAME = "alpr"
#: The model format that ServingRuntime declares (``supportedModelFormats``) and the InferenceService asks for.
MODEL_FORMAT = {"name": "alpr", "version": "1"}
#: The port the model server listens on in the container (KServe's default, the ServingRuntime's ``--http_port``).
SERVING_PORT = 8080
#: Prefix of the annotations and labels this project puts on the InferenceService.
ANNOTATION_PREFIX = "alpr-kubeflow.github.io"
#: Where a pod finds its own namespace.
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Split whose EIR the Deploy decision compares and the annotations name (the held-out one, recorded by Test).
DEFAULT_EIR_SPLIT = "test"
#: URI schemes of a ``storageUri`` KServe accepts (KServe v0.20.0, ``SupportedStorageURIPrefixList`` in
#: pkg/controller/v1beta1/inferenceservice/utils/utils.go), less ``file://``: a path in the initializer's own pod.
REMOTE_SCHEMES = frozenset({"gs", "s3", "pvc", "https", "http", "hdfs", "webhdfs", "oci", "oci+native", "hf"})

#: ``spec.predictor.logger.mode`` values (KServe's ``LoggerType``, the CRD's enum).
LOGGER_MODES = ("all", "request", "response")
#: Request headers KServe's payload logger copies into each event's ``ce-metadata``: the V2 binary data extension's
#: JSON header length, which a receiver needs to split a binary body (alpr/serving/eventlog.py sends the same).
LOGGER_METADATA_HEADERS = ("Inference-Header-Content-Length",)

# RFC 1035 label (an InferenceService name becomes a DNS name) and RFC 1123 label (a namespace, a claim name).
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class DeployError(RuntimeError):
    """Deploying failed (API error, no cluster configuration, a model the cluster cannot read); the message says
    what, and the failure is recorded in the metadata store when it happened while deploying."""


def in_cluster() -> bool:
    """Whether this process runs in a pod of a Kubernetes cluster (the kubelet sets ``KUBERNETES_SERVICE_HOST``)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def resolve_target(target: str) -> str:
    """The concrete target of ``target`` (one of :data:`DEPLOY_TARGETS`, or ``""``): ``local`` or ``kubernetes``.

    ``auto`` / ``""``: ``$ALPR_DEPLOY_TARGET`` when it is ``local`` or ``kubernetes`` (an operator's explicit
    choice, e.g. the cluster ConfigMap ``alpr-config``), else ``kubernetes`` when :func:`in_cluster`, else ``local``.

    Raises:
        ValueError: ``target`` or ``$ALPR_DEPLOY_TARGET`` is not one of :data:`DEPLOY_TARGETS`.
    """
    if target in (LOCAL_TARGET, KUBERNETES_TARGET):
        return target
    if target not in ("", AUTO_TARGET):
        raise ValueError(f"deploy target must be one of {', '.join(DEPLOY_TARGETS)}, got {target!r}")
    env = os.environ.get("ALPR_DEPLOY_TARGET", "").strip()
    if env not in ("", *DEPLOY_TARGETS):
        raise ValueError(f"ALPR_DEPLOY_TARGET must be one of {', '.join(DEPLOY_TARGETS)}, got {env!r}")
    if env in (LOCAL_TARGET, KUBERNETES_TARGET):
        return env
    return KUBERNETES_TARGET if in_cluster() else LOCAL_TARGET


class DeploySettings(BaseSettings):
    """Where and how the Deploy step serves a model; every field is read from ``ALPR_<FIELD>`` (upper case).

    The model server's container (image, resources, probes, security context) is the ServingRuntime's
    (``serving_runtime``), declared by the manifests / the chart; these settings shape only the InferenceService.

    Attributes:
        deploy_target: one of :data:`DEPLOY_TARGETS` (``""`` is read as ``auto``); :meth:`target` resolves it.
        isvc_name: the InferenceService's name (an RFC 1035 label; default ``alpr``, also the served model's name).
        isvc_namespace: its namespace; empty: the pod's own namespace in a cluster, else ``default``.
        serving_runtime: the ServingRuntime the predictor runs (default :data:`RUNTIME_NAME`).
        serving_service_account: the predictor pods' service account, which KServe's storage initializer reads
            the model with (workload identity, or a KServe storage secret attached to it); empty: the namespace's
            default.
        serving_min_replicas, serving_max_replicas: KServe autoscaling bounds of a created InferenceService.
        serving_deployment_mode: KServe's ``serving.kserve.io/deploymentMode`` annotation on creation
            (``RawDeployment`` as in the manifests; empty: the cluster's default).
        model_pvc: the PersistentVolumeClaim mounted at ``model_pvc_mount`` in the pipeline's pods (the workspace,
            default :class:`~alpr.kubeflow.platform.PlatformSettings`'s ``pvc``): a model stored under that path
            is served as ``pvc://<model_pvc>/<path below the mount>`` (:func:`storage_uri`); empty: none.
        model_pvc_mount: where that claim is mounted (default ``PlatformSettings``'s ``pvc_mount``).
        monitor_url: where KServe's payload logger of a created InferenceService sends each request and response
            (``spec.predictor.logger.url``; the monitor's ``/events``, e.g.
            ``http://alpr-monitor.<namespace>.svc.cluster.local/events``); empty: no logger.
        monitor_log_mode: the logger's ``mode``, one of :data:`LOGGER_MODES`.
        kube_context: kubeconfig context to use outside a cluster (empty: the current one).
        deploy_api_attempts: attempts of each Kubernetes API call on a retryable failure (429, 5xx, connection).
    """

    model_config = SettingsConfigDict(env_prefix="ALPR_", extra="ignore")

    deploy_target: Literal["auto", "local", "kubernetes"] = AUTO_TARGET
    isvc_name: str = "alpr"
    isvc_namespace: str = ""
    serving_runtime: str = RUNTIME_NAME
    serving_service_account: str = "alpr-serving"
    serving_min_replicas: int = Field(1, ge=0)
    serving_max_replicas: int = Field(3, ge=1)
    serving_deployment_mode: str = "RawDeployment"
    model_pvc: str = PlatformSettings.model_fields["pvc"].default
    model_pvc_mount: str = PlatformSettings.model_fields["pvc_mount"].default
    monitor_url: str = ""
    monitor_log_mode: Literal["all", "request", "response"] = "all"
    kube_context: str = ""
    deploy_api_attempts: int = Field(4, ge=1, le=10)

    @field_validator("deploy_target", mode="before")
    @classmethod
    def _empty_is_auto(cls, value: Any) -> Any:
        return AUTO_TARGET if value == "" else value

    @field_validator("isvc_name", "serving_runtime")
    @classmethod
    def _check_name(cls, value: str, info) -> str:
        if not _DNS_1035.match(value):
            raise ValueError(
                f"ALPR_{info.field_name.upper()} {value!r} is not a valid name (lower-case letters, digits and "
                "'-', starting with a letter, at most 63 characters)"
            )
        return value

    @field_validator("isvc_namespace", "model_pvc")
    @classmethod
    def _check_label(cls, value: str, info) -> str:
        if value and not _DNS_1123.match(value):
            raise ValueError(f"ALPR_{info.field_name.upper()} {value!r} is not a valid Kubernetes name")
        return value

    @field_validator("model_pvc_mount")
    @classmethod
    def _check_mount(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"ALPR_MODEL_PVC_MOUNT {value!r} is not an absolute path")
        return value

    @field_validator("monitor_url")
    @classmethod
    def _check_monitor_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"ALPR_MONITOR_URL {value!r} is not an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _check_replicas(self) -> DeploySettings:
        if self.serving_min_replicas > self.serving_max_replicas:
            raise ValueError(
                f"ALPR_SERVING_MIN_REPLICAS ({self.serving_min_replicas}) is above "
                f"ALPR_SERVING_MAX_REPLICAS ({self.serving_max_replicas})"
            )
        return self

    def target(self) -> str:
        """``local`` or ``kubernetes``: :func:`resolve_target` of ``deploy_target``."""
        return resolve_target(self.deploy_target)

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
        return LOCAL_TARGET if self.target() == LOCAL_TARGET else f"{self.namespace()}/{self.isvc_name}"


def format_eir(eir: float | None) -> str:
    """An EIR as shown in annotations, reasons and Markdown: 4 decimals, or ``n/a`` for None."""
    return "n/a" if eir is None else f"{eir:.4f}"


def model_annotations(
    *, model_uri: str, model_id: int, eir: float | None, run: str | None, split: str = DEFAULT_EIR_SPLIT
) -> dict[str, str]:
    """The annotations that say which model an InferenceService serves (the keys start with
    :data:`ANNOTATION_PREFIX`; values are strings, EIR with 4 decimals or ``n/a``; ``model_uri`` as the metadata
    store records it)."""
    return {
        f"{ANNOTATION_PREFIX}/model-id": str(model_id),
        f"{ANNOTATION_PREFIX}/model-uri": model_uri,
        f"{ANNOTATION_PREFIX}/eir": format_eir(eir),
        f"{ANNOTATION_PREFIX}/eir-split": split,
        f"{ANNOTATION_PREFIX}/run": run or "",
    }


def storage_uri(model_uri: str, settings: DeploySettings) -> str:
    """The ``storageUri`` KServe's storage initializer reads ``model_uri`` (as the metadata store records it) from.

    A URI with a scheme the initializer reads (:data:`REMOTE_SCHEMES`: ``gs://``, ``s3://``, ``pvc://``...) is
    returned as it is. A local path (or ``file://`` URI) under ``settings.model_pvc_mount`` -- a model stored on the
    workspace PVC (``ALPR_STORAGE_URI=/mnt/alpr/storage``) -- becomes ``pvc://<model_pvc>/<path below the mount>``,
    which KServe mounts read-only at ``/mnt/models``.

    Raises:
        DeployError: a relative path, a path outside that mount (or no ``model_pvc``), or an unknown scheme:
            the cluster cannot read it.
    """
    scheme, sep, _ = model_uri.partition("://")
    if sep and scheme != "file":
        if scheme.lower() not in REMOTE_SCHEMES:
            raise DeployError(
                f"model URI {model_uri!r}: KServe's storage initializer reads no {scheme}:// URIs "
                f"(it reads {', '.join(sorted(REMOTE_SCHEMES))})"
            )
        return model_uri
    path = PurePosixPath(model_uri.removeprefix("file://"))
    mount = PurePosixPath(settings.model_pvc_mount)
    if settings.model_pvc and path.is_absolute() and path.is_relative_to(mount) and ".." not in path.parts:
        below = path.relative_to(mount).as_posix()
        return f"pvc://{settings.model_pvc}" + ("" if below == "." else f"/{below}")
    raise DeployError(
        f"the cluster cannot read model {model_uri!r}: a local path outside the workspace PVC "
        f"{settings.model_pvc or '(none: ALPR_MODEL_PVC is empty)'} mounted at {settings.model_pvc_mount} "
        "(store models in a gs:// or s3:// bucket, or on that PVC: ALPR_STORAGE_URI=/mnt/alpr/storage)"
    )


def logger_spec(settings: DeploySettings) -> dict[str, Any] | None:
    """``spec.predictor.logger`` of the InferenceService: KServe's payload logger sending each request and its
    response as CloudEvents to ``settings.monitor_url`` (mode ``settings.monitor_log_mode``, the metadata headers
    :data:`LOGGER_METADATA_HEADERS`); None when ``monitor_url`` is empty."""
    if not settings.monitor_url:
        return None
    return {
        "mode": settings.monitor_log_mode,
        "url": settings.monitor_url,
        "metadataHeaders": list(LOGGER_METADATA_HEADERS),
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
    """The InferenceService (``serving.kserve.io/v1beta1``) that serves ``model_uri`` with the project's runtime.

    ``spec.predictor.model``: model format :data:`MODEL_FORMAT`, runtime ``settings.serving_runtime``, and the
    ``storageUri`` :func:`storage_uri` maps ``model_uri`` to; the predictor: ``minReplicas`` / ``maxReplicas``, the
    service account, the pod's non-root security context (the serving image's uid 10001). The same shape as
    ``manifests/base/inferenceservice.yaml``. Annotations carry the model id, URI, EIR and run
    (:func:`model_annotations`). With ``settings.monitor_url`` the predictor logs its traffic there
    (:func:`logger_spec`). No secret goes into it.

    Returns:
        the resource as a JSON-serialisable dict (camelCase fields, as the API server takes it).

    Raises:
        DeployError: the cluster cannot read ``model_uri`` (:func:`storage_uri`).
    """
    annotations = model_annotations(model_uri=model_uri, model_id=model_id, eir=eir, run=run, split=split)
    if settings.serving_deployment_mode:
        annotations["serving.kserve.io/deploymentMode"] = settings.serving_deployment_mode
    predictor: dict[str, Any] = {
        "minReplicas": settings.serving_min_replicas,
        "maxReplicas": settings.serving_max_replicas,
        # the serving image's user (Dockerfile); fsGroup lets it read what the storage initializer wrote
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "model": {
            "modelFormat": dict(MODEL_FORMAT),
            "runtime": settings.serving_runtime,
            "storageUri": storage_uri(model_uri, settings),
        },
    }
    if settings.serving_service_account:
        predictor["serviceAccountName"] = settings.serving_service_account
    logger = logger_spec(settings)
    if logger is not None:
        predictor["logger"] = logger
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

    Only ``spec.predictor.model.storageUri`` and this project's annotations (:data:`ANNOTATION_PREFIX`) change;
    a JSON merge patch leaves every other field (runtime, resources, replicas, service account) as the manifests,
    the chart or an operator set it. The ``resourceVersion`` read is sent along: the API server refuses the patch
    (409) when the object changed in between.

    Raises:
        DeployError: ``existing`` serves no model of format :data:`MODEL_FORMAT` (another runtime's, or the custom
            ``kserve-container`` predictor of earlier versions of this project: delete it, then re-apply).
    """
    model = existing.get("spec", {}).get("predictor", {}).get("model") or {}
    fmt = (model.get("modelFormat") or {}).get("name")
    if fmt != MODEL_FORMAT["name"]:
        meta = existing.get("metadata", {})
        raise DeployError(
            f"InferenceService {meta.get('namespace')}/{meta.get('name')} does not serve a model of format "
            f"{MODEL_FORMAT['name']!r} (spec.predictor.model.modelFormat: {fmt!r}): it was not made for this "
            "model server; delete it (kubectl delete inferenceservice ...) or set ALPR_ISVC_NAME to another name"
        )
    mine = {k: v for k, v in body["metadata"]["annotations"].items() if k.startswith(f"{ANNOTATION_PREFIX}/")}
    metadata: dict[str, Any] = {"annotations": mine}
    if existing.get("metadata", {}).get("resourceVersion"):
        metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
    uri = body["spec"]["predictor"]["model"]["storageUri"]
    return {"metadata": metadata, "spec": {"predictor": {"model": {"storageUri": uri}}}}


def kube_api_client(context: str = ""):
    """A ``kubernetes.client.ApiClient``: the pod's service account in a cluster, else the kubeconfig
    (``$KUBECONFIG`` or ``~/.kube/config``; ``context`` or its current context).

    Raises:
        DeployError: neither is available or the kubeconfig is unusable.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if in_cluster():
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


def apply_inference_service(body: dict[str, Any], api_client=None, *, attempts: int = 4) -> str:
    """Create the InferenceService ``body``, or point the existing one at ``body``'s model (merge patch).

    Reads the object first: 404 → check that its ServingRuntime exists in the namespace (a 403 on that read is
    logged and passed over: RBAC without ``servingruntimes`` ``get``), then create ``body`` as it is; found →
    :func:`model_patch` (only ``storageUri`` and the annotations change; ``application/merge-patch+json``). A
    conflict (409: created or changed concurrently) starts over, at most 3 times.

    Args:
        body: what :func:`build_inference_service` returns (``metadata.name`` / ``metadata.namespace`` set).
        api_client: a ``kubernetes.client.ApiClient`` (default: :func:`kube_api_client`).
        attempts: attempts of each call on a retryable failure (429, 5xx, connection errors; tenacity back-off).

    Returns:
        ``"created"`` or ``"patched"``.

    Raises:
        kubernetes.client.ApiException: the API refused a request (403 without RBAC, 422 invalid, ...).
        urllib3.exceptions.HTTPError: the API server was not reachable after ``attempts`` attempts.
        DeployError: the existing object serves another model format, the ServingRuntime is missing, the object
            kept changing, or there is no Kubernetes configuration (``api_client`` None).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    runtime = body["spec"]["predictor"]["model"]["runtime"]
    api = client.CustomObjectsApi(api_client if api_client is not None else kube_api_client())
    where = (ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL)
    for _ in range(3):
        try:
            existing = kube_api.call(api.get_namespaced_custom_object, *where, name, attempts=attempts)
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        try:
            if existing is None:
                _check_runtime(api, namespace, runtime, attempts)
                kube_api.call(api.create_namespaced_custom_object, *where, body, attempts=attempts)
                return "created"
            kube_api.call(
                api.patch_namespaced_custom_object, *where, name, model_patch(existing, body), attempts=attempts
            )
            return "patched"
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.warning("InferenceService %s/%s changed concurrently (409); reading it again", namespace, name)
    raise DeployError(f"InferenceService {namespace}/{name} kept changing while it was being updated (3 conflicts)")


def _check_runtime(api, namespace: str, runtime: str, attempts: int) -> None:
    """Raise :class:`DeployError` when the ServingRuntime ``runtime`` is not in ``namespace`` (an InferenceService
    naming it would be accepted, then never become ready)."""
    from kubernetes.client.exceptions import ApiException

    try:
        kube_api.call(
            api.get_namespaced_custom_object,
            ISVC_GROUP,
            RUNTIME_VERSION,
            namespace,
            RUNTIME_PLURAL,
            runtime,
            attempts=attempts,
        )
    except ApiException as exc:
        if exc.status == 404:
            raise DeployError(
                f"no ServingRuntime {runtime!r} in namespace {namespace}: apply manifests/overlays/<env> or the "
                "Helm chart charts/alpr there first (it declares the model server), or set ALPR_SERVING_RUNTIME"
            ) from None
        if exc.status != 403:
            raise
        log.warning("may not read ServingRuntime %s/%s (403); creating the InferenceService anyway", namespace, runtime)


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
