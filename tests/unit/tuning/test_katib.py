"""The Katib Experiment: rendering (offline checks) and the cluster code against an in-memory Kubernetes API.

The API server is kmock's ``KubernetesEmulator`` (PyPI ``kmock``), an in-memory Kubernetes API on 127.0.0.1 that
stores custom objects; the kubernetes client talks HTTP to it exactly as to a cluster. Katib's controller cannot run
here, so :func:`katib_fakes.katib_controller` plays its part through the same API (see :mod:`katib_fakes`).
"""

import copy
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from k8s_tools import SchemaError, validate_custom, validate_katib_experiment
from katib_fakes import NS, katib_controller, serve_kubernetes

from alpr.defaults import TRAINING_DEFAULTS, TUNING_DEFAULTS
from alpr.kubeflow.platform import CONFIG_MAP_KEYS
from alpr.metadata import MetadataStore
from alpr.tuning import katib, trial
from alpr.tuning.collector import METRICS_FILTER
from alpr.tuning.options import TuningOptions
from alpr.tuning.run import run_katib
from alpr.tuning.space import SearchSpace, default_space

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDER = re.compile(r"\$\{trialParameters\.(\w+)\}")


@pytest.fixture(autouse=True)
def _platform_defaults(monkeypatch):
    """The cluster names of alpr.kubeflow.platform at their defaults (no ALPR_K8S_* from the environment)."""
    import os

    for key in [k for k in os.environ if k.startswith("ALPR_K8S_")]:
        monkeypatch.delenv(key)


def _options(**kwargs) -> TuningOptions:
    base = dict(
        name="alpr-tune-test",
        namespace=NS,
        data="annotations-v1",
        max_trials=3,
        parallel=1,
        max_failed=1,
        fixed={"epochs": 2, "val_interval": 1, "seed": 0},
        image="registry.local/alpr-components:test",
    )
    return TuningOptions(**{**base, **kwargs})


def _substitute(experiment: dict, values: dict[str, str]) -> dict:
    """The trial Job Katib would create for ``values`` (``{parameter name: value}``)."""
    refs = {p["name"]: p["reference"] for p in experiment["spec"]["trialTemplate"]["trialParameters"]}
    job = copy.deepcopy(experiment["spec"]["trialTemplate"]["trialSpec"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [PLACEHOLDER.sub(lambda m: values[refs[m.group(1)]], a) for a in container["args"]]
    job["metadata"] = {"name": "trial-job", "namespace": NS}
    return job


# --------------------------------------------------------------------------------------------------- rendering
def test_the_experiment_has_katibs_structure():
    exp = katib.render_experiment(default_space(), _options())
    assert exp["apiVersion"] == "kubeflow.org/v1beta1" and exp["kind"] == "Experiment"
    assert exp["metadata"] == {
        "name": "alpr-tune-test",
        "namespace": NS,
        "labels": {"app.kubernetes.io/part-of": "alpr", "app.kubernetes.io/component": "tuning"},
    }
    spec = exp["spec"]
    assert spec["objective"]["type"] == "maximize"
    assert spec["objective"]["objectiveMetricName"] == "eir"
    assert spec["objective"]["additionalMetricNames"] == ["mAP", "loss"]
    assert {s["name"]: s["value"] for s in spec["objective"]["metricStrategies"]} == {
        "eir": "max",
        "mAP": "latest",
        "loss": "latest",
    }
    assert spec["algorithm"] == {"algorithmName": "tpe", "algorithmSettings": [{"name": "random_state", "value": "0"}]}
    assert (spec["parallelTrialCount"], spec["maxTrialCount"], spec["maxFailedTrialCount"]) == (1, 3, 1)
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "3"}, {"name": "start_step", "value": "2"}],
    }
    assert spec["metricsCollectorSpec"] == {
        "collector": {"kind": "StdOut"},
        "source": {"filter": {"metricsFormat": [METRICS_FILTER]}},
    }
    assert spec["parameters"] == default_space().katib()
    template = spec["trialTemplate"]
    job = template["trialSpec"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == template["primaryContainerName"] == katib.PRIMARY_CONTAINER
    assert container["image"] == "registry.local/alpr-components:test"
    assert container["command"] == ["python", "-m", "alpr.tuning.trial"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Every searched parameter reaches the entry point through exactly one ${trialParameters.x}.
    used = [m.group(1) for a in container["args"] for m in PLACEHOLDER.finditer(a)]
    assert sorted(used) == sorted(p["name"] for p in template["trialParameters"])
    assert sorted(p["reference"] for p in template["trialParameters"]) == sorted(default_space().names)
    assert "--data=annotations-v1" in container["args"] and "--epochs=2" in container["args"]
    # Backends reach the trials as they reach the pipeline's tasks (alpr.kubeflow.platform): by Secret and ConfigMap
    # names, never by value.
    assert container["envFrom"] == [{"configMapRef": {"name": "alpr-config", "optional": True}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["ALPR_DB_URL"]["valueFrom"] == {"secretKeyRef": {"name": "alpr-db", "key": "url"}}
    assert env["ALPR_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "alpr-db"
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/secrets/google/key.json"
    assert {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]} == {"gcs-key", "git-ssh"}


@pytest.mark.parametrize("algorithm", ["random", "tpe", "bayesianoptimization"])
def test_the_algorithm_is_configurable(algorithm):
    exp = katib.render_experiment(default_space(), _options(algorithm=algorithm, early_stopping=False, gpus=1))
    assert exp["spec"]["algorithm"]["algorithmName"] == algorithm
    assert "earlyStopping" not in exp["spec"]
    pod = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["tolerations"]  # GPU trials tolerate the GPU nodes' taint, as Train does


def test_every_trial_job_katib_can_make_is_valid_and_accepted_by_the_entry_point():
    """Fill the template with values of the space (as Katib does), validate the Job against the Kubernetes schema,
    and parse the container's arguments with the entry point's own parser."""
    space = default_space()
    exp = katib.render_experiment(space, _options())
    walks = {p.name: list(p.walk()) for p in space}
    for i in range(max(len(v) for v in walks.values())):
        values = {name: vals[i % len(vals)] for name, vals in walks.items()}
        job = _substitute(exp, values)
        kubernetes_validate.validate(job, kubernetes_validate.utils.latest_version(), strict=True)
        args, hp = trial.parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
        assert args.data == "annotations-v1" and hp.epochs == 2
        for name, value in values.items():
            assert getattr(hp, name) == space.convert({name: value})[name]


def test_the_default_experiment_trains_with_the_pipelines_defaults():
    """Options left at their defaults: the trials get the pipeline's data, split, config, epochs, validation interval
    and seed, and the study the pipeline's algorithm and trial counts (all from alpr.defaults)."""
    space = default_space()
    exp = katib.render_experiment(space, TuningOptions(name="alpr-tune", image="registry.local/alpr:test"))
    study = exp["spec"]
    assert study["algorithm"]["algorithmName"] == TUNING_DEFAULTS.tune_algorithm
    assert (study["parallelTrialCount"], study["maxTrialCount"], study["maxFailedTrialCount"]) == (
        TUNING_DEFAULTS.tune_parallel,
        TUNING_DEFAULTS.tune_max_trials,
        TUNING_DEFAULTS.tune_max_failed,
    )
    job = _substitute(exp, {p.name: next(iter(p.walk())) for p in space})
    args, hp = trial.parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (args.data, args.config, args.split_seed) == (
        TRAINING_DEFAULTS.annotation_version,
        TRAINING_DEFAULTS.config,
        TRAINING_DEFAULTS.split_seed,
    )
    assert tuple(args.split_fractions) == TRAINING_DEFAULTS.split_fractions
    fixed = {name: getattr(hp, name) for name in TuningOptions().fixed}
    assert fixed == {name: TRAINING_DEFAULTS[name] for name in ("epochs", "val_interval", "seed")}
    # The committed rendering says the same (test_the_committed_experiment_is_the_rendering keeps it current).
    committed = yaml.safe_load((ROOT / "katib" / "experiment.yaml").read_text())
    (container,) = committed["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    assert {
        f"--epochs={TRAINING_DEFAULTS.epochs}",
        f"--val-interval={TRAINING_DEFAULTS.val_interval}",
        f"--seed={TRAINING_DEFAULTS.seed}",
        f"--config={TRAINING_DEFAULTS.config}",
    } <= set(container["args"])


def test_the_experiment_yaml_parses_back():
    exp = katib.render_experiment(default_space(), _options())
    assert yaml.safe_load(katib.experiment_yaml(exp)) == exp
    assert SearchSpace.from_katib(exp["spec"]["parameters"]).names == default_space().names


def test_the_committed_experiment_is_the_rendering(tmp_path):
    assert katib.main(["render", "-o", str(tmp_path / "e.yaml")]) == 0
    committed = ROOT / "katib" / "experiment.yaml"
    assert yaml.safe_load(committed.read_text()) == yaml.safe_load((tmp_path / "e.yaml").read_text()), (
        "katib/experiment.yaml is stale: python -m alpr.tuning.katib render -o katib/experiment.yaml"
    )


def test_no_secret_reaches_the_experiment(monkeypatch):
    monkeypatch.setenv("ALPR_DB_PASSWORD", "s3cr3t-pw")
    monkeypatch.setenv("ALPR_DB_URL", "mysql+pymysql://alpr:s3cr3t-pw@db:3306/alpr")
    text = katib.experiment_yaml(katib.render_experiment(default_space(), _options()))
    assert "s3cr3t" not in text and "mysql" not in text


def test_values_unsafe_on_a_command_line_are_refused():
    with pytest.raises(ValueError, match="data='v1; rm -rf /'"):
        katib.render_experiment(default_space(), _options(data="v1; rm -rf /"))
    with pytest.raises(ValueError, match="lr also searched"):
        katib.render_experiment(default_space(), _options(fixed={"lr": 0.1}))


# --------------------------------------------------------------------------------------------------- TrainJob trials
def _filled_trainjob(experiment: dict, values: dict[str, str]) -> dict:
    """The TrainJob Katib would create for ``values`` (``{parameter name: value}``): every ``${trialParameters.x}``
    replaced by its value, the trial's name and namespace set."""
    refs = {p["name"]: p["reference"] for p in experiment["spec"]["trialTemplate"]["trialParameters"]}
    text = json.dumps(experiment["spec"]["trialTemplate"]["trialSpec"])
    job = json.loads(PLACEHOLDER.sub(lambda m: str(values[refs[m.group(1)]]), text))
    job["metadata"] = {**job.get("metadata", {}), "name": f"{experiment['metadata']['name']}-x7k2m9qp", "namespace": NS}
    return job


def _gjson_matches(condition: str, obj: dict) -> bool:
    """Katib's trial conditions of the one shape used here, ``status.conditions.#(type=="T")#|#(status=="S")#``
    (GJSON: the conditions of type T, then those with status S): whether any condition matches."""
    match = re.fullmatch(r'status\.conditions\.#\(type=="(\w+)"\)#\|#\(status=="(\w+)"\)#', condition)
    assert match, f"not the expected GJSON shape: {condition}"
    kind, status = match.groups()
    return any(c["type"] == kind and c["status"] == status for c in obj.get("status", {}).get("conditions", []))


def test_distributed_trials_are_trainjobs_running_the_same_trial_under_torchrun():
    space = default_space()
    one_pod = katib.render_experiment(space, _options(gpus=1))
    exp = katib.render_experiment(space, _options(trial_workers=2, trial_gpus_per_worker=1))
    validate_katib_experiment(exp)
    template = exp["spec"]["trialTemplate"]
    assert template["trialParameters"] == one_pod["spec"]["trialTemplate"]["trialParameters"]
    assert template["primaryContainerName"] == "node"
    assert template["primaryPodLabels"] == {
        "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "batch.kubernetes.io/job-completion-index": "0",
    }
    job = template["trialSpec"]
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert "name" not in job["metadata"] and "namespace" not in job["metadata"]  # Katib names it after the trial
    trainer = job["spec"]["trainer"]
    (container,) = one_pod["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    assert trainer["command"] == ["torchrun", "--max-restarts=0", "-m", "alpr.tuning.trial", *container["args"]]
    assert trainer["image"] == container["image"] == "registry.local/alpr-components:test"
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 1
    # the backends as a one-pod trial gets them, the ConfigMap key by key (a TrainJob has no envFrom)
    env = {e["name"]: e for e in trainer["env"]}
    assert "envFrom" not in json.dumps(job)
    for key in CONFIG_MAP_KEYS:
        assert env[key]["valueFrom"] == {"configMapKeyRef": {"name": "alpr-config", "key": key, "optional": True}}
    assert env["ALPR_DB_URL"]["valueFrom"] == {"secretKeyRef": {"name": "alpr-db", "key": "url"}}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/secrets/google/key.json"
    one_pod_env = {e["name"] for e in container["env"]}
    assert one_pod_env <= set(env) and set(env) - one_pod_env == set(CONFIG_MAP_KEYS)
    text = json.dumps(job)
    assert '"gcs-key"' in text and '"git-ssh"' in text and "nvidia.com/gpu" in text and "tolerations" in text
    # every TrainJob Katib can make from the space is valid against Trainer's CRD, and its arguments parse
    walks = {p.name: list(p.walk()) for p in space}
    for i in range(max(len(v) for v in walks.values())):
        values = {name: vals[i % len(vals)] for name, vals in walks.items()}
        filled = _filled_trainjob(exp, values)
        validate_custom(filled)
        args, hp = trial.parse_args(filled["spec"]["trainer"]["command"][4:])
        assert args.data == "annotations-v1" and hp.epochs == 2
        for name, value in values.items():
            assert getattr(hp, name) == space.convert({name: value})[name]


def test_a_trainjob_trials_conditions_read_trainers_conditions():
    template = katib.render_experiment(default_space(), _options(trial_workers=3))["spec"]["trialTemplate"]
    succeeded = {"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted"}]}}
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobsFailed"}]}}
    running = {"status": {"conditions": [{"type": "Suspended", "status": "False", "reason": "Resumed"}]}}
    assert _gjson_matches(template["successCondition"], succeeded)
    assert _gjson_matches(template["failureCondition"], failed)
    for other in (failed, running):
        assert not _gjson_matches(template["successCondition"], other)
    for other in (succeeded, running):
        assert not _gjson_matches(template["failureCondition"], other)


def test_several_gpus_per_worker_make_a_trainjob_of_one_node():
    exp = katib.render_experiment(default_space(), _options(trial_gpus_per_worker=4))
    validate_katib_experiment(exp)
    trainer = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 4)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    cpu_only = katib.render_experiment(default_space(), _options(trial_workers=2))["spec"]["trialTemplate"]
    trainer = cpu_only["trialSpec"]["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)  # one process per node on the CPU
    assert "nvidia.com/gpu" not in json.dumps(cpu_only)


@pytest.mark.parametrize(
    ("kwargs", "kind", "gpus"),
    [
        ({}, "Job", None),  # the defaults: the one-pod Job, as committed in katib/experiment.yaml
        ({"trial_gpus_per_worker": 1}, "Job", 1),
        ({"gpus": 2}, "Job", 2),  # a one-pod trial with 2 GPUs (one process) stays a Job, as before
        ({"gpus": 2, "trial_gpus_per_worker": 2}, "TrainJob", 2),
    ],
)
def test_one_worker_of_at_most_one_gpu_stays_a_job(kwargs, kind, gpus):
    exp = katib.render_experiment(default_space(), _options(**kwargs))
    validate_katib_experiment(exp)
    template = exp["spec"]["trialTemplate"]
    assert template["trialSpec"]["kind"] == kind
    if kind == "Job":
        assert "primaryPodLabels" not in template and "successCondition" not in template
        limits = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits.get("nvidia.com/gpu") == gpus
    else:
        assert template["trialSpec"]["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == gpus


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trial_workers": 0}, "trial_workers=0"),
        ({"trial_gpus_per_worker": -1}, "trial_gpus_per_worker=-1"),
        ({"trial_workers": True}, "trial_workers=True"),
        ({"gpus": 1, "trial_gpus_per_worker": 2}, "set one of them"),
        ({"name": "1st-study", "trial_workers": 2}, "must start with a letter"),
    ],
)
def test_bad_trial_scales_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _options(**kwargs)


def test_the_render_command_renders_trainjob_trials(tmp_path, capsys):
    out = tmp_path / "e.yaml"
    assert katib.main(["render", "-o", str(out), "--trial-workers", "2", "--trial-gpus-per-worker", "2"]) == 0
    exp = yaml.safe_load(out.read_text())
    validate_katib_experiment(exp)
    trainer = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 2)
    assert katib.main(["render", "--trial-workers", "0"]) == 2
    assert "trial_workers=0" in capsys.readouterr().err


def test_a_broken_trainjob_template_is_caught_by_the_checks():
    exp = katib.render_experiment(default_space(), _options(trial_workers=2))
    broken = copy.deepcopy(exp)
    broken["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["numNode"] = 2
    with pytest.raises(SchemaError, match="numNode"):
        validate_katib_experiment(broken)
    broken = copy.deepcopy(exp)
    broken["spec"]["trialTemplate"]["primaryContainerName"] = katib.PRIMARY_CONTAINER
    with pytest.raises(AssertionError, match="trainer container"):
        validate_katib_experiment(broken)
    broken = copy.deepcopy(exp)
    broken["spec"]["trialTemplate"]["successCondition"] = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
    with pytest.raises(AssertionError, match="Succeeded"):
        validate_katib_experiment(broken)


# --------------------------------------------------------------------------------------------------- cluster
@pytest.fixture
def k8s_api():
    """A ``CustomObjectsApi`` bound to kmock's in-memory Kubernetes API (see :mod:`katib_fakes`)."""
    with serve_kubernetes() as api:
        yield api.custom


def _get(api, name):
    return api.get_namespaced_custom_object("kubeflow.org", "v1beta1", NS, "experiments", name)


@pytest.fixture
def store(tmp_path):
    s = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    s.create_schema()
    return s


def test_a_succeeded_experiment_gives_its_best_trial_and_is_recorded(k8s_api, store):
    space, options = default_space(), _options(name="tune-ok")
    controller = katib_controller(k8s_api, "tune-ok")
    progress = []
    outcome = run_katib(space, options, store=store, api=k8s_api, poll_s=0.05, on_progress=progress.append)
    controller.join(5)
    assert outcome.status == "succeeded" and outcome.best_trial == "tune-ok-succeeded"
    expected = {p.name: space.convert({p.name: next(p.walk())})[p.name] for p in space}
    assert outcome.best_params == {"epochs": 2, "val_interval": 1, "seed": 0, **expected}
    assert outcome.best_metrics == {"eir": 0.71, "mAP": 0.55, "loss": 1.2}  # objective: max; others: latest
    assert any("Succeeded" in line for line in progress) and "created Katib Experiment" in progress[0]
    created = _get(k8s_api, "tune-ok")
    assert created["spec"] == katib.render_experiment(space, options)["spec"]

    study = store.get_tuning_study("tune-ok")
    assert study["backend"] == "katib" and study["status"] == "succeeded"
    assert study["best_trial"] == "tune-ok-succeeded" and study["best_value"] == 0.71
    assert study["best_params"] == outcome.best_params
    rows = store.tuning_trials("tune-ok")
    assert [(r["name"], r["state"]) for r in rows] == [
        ("tune-ok-succeeded", "succeeded"),
        ("tune-ok-stopped", "pruned"),
        ("tune-ok-failed", "failed"),
    ]
    assert rows[0]["value"] == 0.71 and rows[2]["value"] is None and rows[2]["message"] == "trial Failed"
    assert store.latest_tuning_study()["name"] == "tune-ok"


def test_a_failed_experiment_raises_with_katibs_reason_and_is_recorded(k8s_api, store):
    controller = katib_controller(k8s_api, "tune-bad", end="Failed")
    with pytest.raises(katib.ExperimentFailed, match="tune-bad failed: ExperimentFailed: .*max failed count"):
        run_katib(
            default_space(),
            _options(name="tune-bad"),
            store=store,
            api=k8s_api,
            poll_s=0.05,
            on_progress=lambda line: None,
        )
    controller.join(5)
    study = store.get_tuning_study("tune-bad")
    assert study["status"] == "failed" and "max failed count" in study["message"]
    assert study["best_params"] is None
    assert len(store.tuning_trials("tune-bad")) == 3
    assert store.latest_tuning_study() is None


def test_an_experiment_that_does_not_finish_in_time_raises_timeout(k8s_api, store):
    with pytest.raises(katib.ExperimentTimeout, match="within 0.3 s .*kubectl -n kubeflow delete experiment tune-slow"):
        run_katib(
            default_space(),
            _options(name="tune-slow", timeout_s=0.3),
            store=store,
            api=k8s_api,
            poll_s=0.05,
            on_progress=lambda line: None,
        )
    assert store.get_tuning_study("tune-slow")["status"] == "timeout"
    assert _get(k8s_api, "tune-slow")["metadata"]["name"] == "tune-slow"  # still there: it runs on


def test_follow_times_out_on_the_clock_it_is_given(k8s_api):
    katib.create_experiment(k8s_api, katib.render_experiment(default_space(), _options(name="tune-clock")))
    now = [0.0]
    with pytest.raises(katib.ExperimentTimeout, match="Pending"):
        katib.follow_experiment(
            k8s_api,
            "tune-clock",
            NS,
            timeout_s=60,
            poll_s=20,
            clock=lambda: now[0],
            sleep=lambda s: now.__setitem__(0, now[0] + s),
        )
    assert now[0] == 60


def test_an_existing_name_is_refused(k8s_api):
    exp = katib.render_experiment(default_space(), _options(name="tune-twice"))
    katib.create_experiment(k8s_api, exp)
    with pytest.raises(katib.KatibError, match="tune-twice already exists: choose another --tune-name"):
        katib.create_experiment(k8s_api, exp)


def test_an_experiment_deleted_while_followed_is_reported(k8s_api):
    katib.create_experiment(k8s_api, katib.render_experiment(default_space(), _options(name="tune-gone")))
    katib_controller(k8s_api, "tune-gone", delete=True).join(5)
    with pytest.raises(katib.KatibError, match="no longer exists"):
        katib.follow_experiment(k8s_api, "tune-gone", NS, timeout_s=5, poll_s=0.05)


def test_an_experiment_without_a_best_trial_is_reported():
    exp = katib.render_experiment(default_space(), _options(name="tune-none"))
    with pytest.raises(katib.KatibError, match="no best trial: no trial reported 'eir'"):
        katib.best_trial(exp, default_space())
