"""The custom resources against the operators' own schemas (tests/cluster/crds/README.md).

KServe: every InferenceService and ServingRuntime -- of the kustomize overlays, the Helm chart (their tests,
test_manifests.py and test_chart.py, validate what they render with the same functions) and of
:func:`alpr.kubeflow.kserve.build_inference_service` (here) -- against KServe v0.20.0's CRDs, unknown fields
rejected. Kubeflow Trainer: a TrainJob against Trainer v2.3.0's CRD, unknown fields rejected. Katib:
``katib/experiment.yaml`` and :func:`alpr.tuning.katib.render_experiment` against the schema written from Katib
v0.19.0's Go types and validating webhook.
"""

import copy
import hashlib
import re
from pathlib import Path

import pytest
import yaml
from k8s_tools import (
    CRDS,
    CUSTOM_CRDS,
    KATIB_EXPERIMENT_SCHEMA,
    SchemaError,
    validate_custom,
    validate_inference_service,
    validate_katib_experiment,
)

from alpr.kubeflow.kserve import DeploySettings, build_inference_service

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_are_the_ones_the_readme_names():
    """Byte for byte the upstream files whose sha256 the README records (a refresh must update both)."""
    readme = (CRDS / "README.md").read_text()
    for (api_version, kind), path in CUSTOM_CRDS.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert re.search(rf"`{re.escape(path.name)}`.*`{digest}`", readme), (
            f"{path.name}: sha256 {digest} not in README"
        )
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
        assert f"{crd['spec']['group']}/" in api_version
    assert "578e60f1ce83dbb5e7151026a3bdc4de233947fc" in KATIB_EXPERIMENT_SCHEMA.read_text()


@pytest.mark.parametrize(
    ("settings", "model_uri", "storage_uri"),
    [
        (DeploySettings(), "gs://alpr-models/alpr/runs/r1/model", "gs://alpr-models/alpr/runs/r1/model"),
        (
            DeploySettings(isvc_namespace="team-a", serving_service_account="", serving_deployment_mode=""),
            "s3://bucket/runs/r1/model",
            "s3://bucket/runs/r1/model",
        ),
        (
            DeploySettings(serving_min_replicas=0, serving_max_replicas=1),
            "/mnt/alpr/storage/runs/r1/model",
            "pvc://alpr-workspace/storage/runs/r1/model",
        ),
    ],
)
def test_build_inference_service_matches_kserves_schema(settings, model_uri, storage_uri):
    body = build_inference_service(settings, model_uri=model_uri, model_id=3, eir=0.75, run="r1")
    predictor = validate_inference_service(body)
    assert predictor["model"]["storageUri"] == storage_uri


def _static_isvc() -> dict:
    return yaml.safe_load((ROOT / "manifests/base/inferenceservice.yaml").read_text())


def _runtime() -> dict:
    return yaml.safe_load((ROOT / "manifests/base/servingruntime.yaml").read_text())


@pytest.mark.parametrize(
    ("make", "where", "change"),
    [
        (_static_isvc, ("spec", "predictor", "model"), {"storageURI": "gs://b/m"}),  # a typo Kubernetes would drop
        (_static_isvc, ("spec", "predictor"), {"minReplica": 2}),
        (_static_isvc, ("spec",), {"predicter": {}}),
        (_static_isvc, ("spec", "predictor", "model", "modelFormat"), {"nam": "alpr"}),
        (_static_isvc, ("spec", "predictor"), {"minReplicas": "two"}),  # wrong type
        (_static_isvc, ("spec", "predictor", "model"), {"modelFormat": {"version": "1"}}),  # required name
        (_runtime, ("spec",), {"supportedModelFormat": []}),
        (_runtime, ("spec", "containers", 0), {"arguments": ["--x"]}),
        (_runtime, ("spec", "containers", 0, "readinessProbe", "httpGet"), {"paht": "/"}),
    ],
)
def test_an_unknown_field_or_a_wrong_type_is_rejected(make, where, change):
    obj = make()
    validate_custom(obj)  # valid as committed
    target = obj
    for key in where:
        target = target[key]
    target.update(change)
    with pytest.raises(SchemaError, match="schema error"):
        validate_custom(obj)


def test_what_the_schema_leaves_open_stays_open_and_unknown_kinds_are_refused():
    isvc = _static_isvc()
    isvc["status"] = {"anything": {"the": "controller writes"}}  # x-kubernetes-preserve-unknown-fields
    isvc["spec"]["predictor"]["nodeSelector"] = {"any-label": "value"}  # a map (additionalProperties: string)
    validate_custom(isvc)
    isvc["metadata"]["labelz"] = {}  # metadata is checked as ObjectMeta
    with pytest.raises(Exception, match="labelz"):
        validate_custom(isvc)
    with pytest.raises(SchemaError, match="no committed CRD"):
        validate_custom({"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": {}})


# --- Katib ---------------------------------------------------------------------------------------------------------


def test_katib_experiments_match_katibs_types():
    validate_katib_experiment(yaml.safe_load((ROOT / "katib/experiment.yaml").read_text()))
    from alpr.tuning.katib import render_experiment
    from alpr.tuning.options import TuningOptions
    from alpr.tuning.space import default_space

    for options in (
        TuningOptions(name="alpr-tune", image="registry.local/alpr:test"),
        TuningOptions(name="alpr-tune-b", image="registry.local/alpr:test", algorithm="random", early_stopping=False),
        TuningOptions(name="alpr-tune-c", image="registry.local/alpr:test", trial_workers=2, gpus=1),  # TrainJobs
    ):
        validate_katib_experiment(render_experiment(default_space(), options))


def _experiment() -> dict:
    return yaml.safe_load((ROOT / "katib/experiment.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e["spec"]["objective"].pop("objectiveMetricName"), "objectiveMetricName"),
        (lambda e: e["spec"].pop("trialTemplate"), "trialTemplate"),
        (lambda e: e["spec"]["algorithm"].pop("algorithmName"), "algorithmName"),
        (lambda e: e["spec"]["parameters"][0].update(parameterType="float"), "float"),
        (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].pop("max"), "max"),
        (lambda e: e["spec"]["parameters"][2]["feasibleSpace"].update(min="1"), "parameters.2.feasibleSpace"),
        (lambda e: e["spec"]["objective"].update(type="maximise"), "maximise"),
        (lambda e: e["spec"]["metricsCollectorSpec"]["collector"].update(kind="Stdout"), "Stdout"),
        (lambda e: e["spec"].update(maxFailedTrialCount=20), "maxFailedTrialCount"),
        (lambda e: e["spec"].update(parallelTrialCount=0), "parallelTrialCount"),
        (lambda e: e["spec"]["trialTemplate"]["trialParameters"][0].update(reference="nope"), "nope"),
        (lambda e: e["spec"]["trialTemplate"].update(primaryContainerName="main"), "primaryContainerName"),
        (lambda e: e["spec"]["trialTemplate"]["trialParameters"].pop(), "trial template uses"),
        (lambda e: e["spec"]["trialTemplate"]["trialSpec"]["metadata"].update(name="x"), "trialSpec"),
        (lambda e: e["spec"]["trialTemplate"].update(configMap={"configMapName": "t"}), "trialTemplate"),
        (lambda e: e["spec"].update(maxTrialCounts=3), "maxTrialCounts"),
        (
            lambda e: e["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"].update(restartPolicy=1),
            "restartPolicy",
        ),
    ],
)
def test_a_bad_experiment_is_rejected(mutate, message):
    experiment = _experiment()
    experiment["spec"]["trialTemplate"]["trialSpec"].setdefault("metadata", {})
    validate_katib_experiment(copy.deepcopy(experiment))
    mutate(experiment)
    with pytest.raises(Exception, match=message):
        validate_katib_experiment(experiment)


# --- Kubeflow Trainer ----------------------------------------------------------------------------------------------


def _trainjob() -> dict:
    """A small TrainJob of the shape a distributed Train step or Katib trial creates."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "alpr-train-r1", "namespace": "kubeflow", "labels": {"app.kubernetes.io/part-of": "alpr"}},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "image": "registry.local/alpr-components:test",
                "command": ["torchrun", "--max-restarts=0", "-m", "alpr.tuning.trial", "--lr=0.01"],
                "numNodes": 2,
                "numProcPerNode": 1,
                "env": [{"name": "ALPR_DB_URL", "valueFrom": {"secretKeyRef": {"name": "alpr-db", "key": "url"}}}],
                "resourcesPerNode": {"limits": {"cpu": "4", "memory": "12Gi", "nvidia.com/gpu": "1"}},
            },
        },
    }


def test_a_trainjob_matches_trainers_schema():
    validate_custom(_trainjob())
    minimal = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "t"},
        "spec": {"runtimeRef": {"name": "torch-distributed"}},
    }
    validate_custom(minimal)


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        (("spec", "trainer"), {"numNode": 2}, "numNode"),  # a typo Kubernetes would drop
        (("spec",), {"runtimeRefs": {"name": "x"}}, "runtimeRefs"),
        (("spec", "runtimeRef"), {"nam": "x"}, "nam"),
        (("spec", "trainer"), {"numNodes": "two"}, "two"),  # wrong type
        (("spec", "trainer", "env", 0), {"valueFrom": {"secretRef": {"name": "x"}}}, "secretRef"),
        (("spec", "trainer", "resourcesPerNode"), {"limit": {"cpu": "1"}}, "limit"),
    ],
)
def test_a_misspelled_trainjob_field_is_rejected(where, change, message):
    obj = _trainjob()
    target = obj
    for key in where:
        target = target[key]
    target.update(change)
    with pytest.raises(SchemaError, match=message):
        validate_custom(obj)


def test_a_trainjob_needs_a_runtime_and_a_dns_label_name():
    obj = _trainjob()
    del obj["spec"]["runtimeRef"]
    with pytest.raises(SchemaError, match="runtimeRef"):
        validate_custom(obj)
    for name in ("1-starts-with-a-digit", "x" * 64):  # the CEL rules at the schema's root, checked by hand
        obj = _trainjob()
        obj["metadata"]["name"] = name
        with pytest.raises(SchemaError, match="RFC 1035"):
            validate_custom(obj)
