"""Tuning in the pipeline and its CLI: the Tune step before Train, ``--katib`` (Katib on kmock, the local twin),
``--params-from-tuning``."""

import json
import shutil

import pytest
import yaml
from katib_fakes import NS, katib_controller, serve_kubernetes
from kfp.dsl import Dataset, Metrics, Model
from kube_emulator import write_kubeconfig

from alpr.metadata import MetadataStore
from alpr.settings import Settings
from alpr.tuning import cli as tuning_cli
from alpr.tuning.space import default_space
from components.train import train
from components.tune import tune
from pipelines import run as pipeline


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh workspace whose settings are the only ``ALPR_*`` in the environment (``pipeline.main`` exports its
    settings into ``os.environ``; monkeypatch restores every key afterwards)."""
    import os

    for key in [k for k in os.environ if k.startswith("ALPR_")]:
        monkeypatch.delenv(key)
    ws = tmp_path / "ws"
    for key, value in Settings(workspace=ws).environ().items():
        monkeypatch.setenv(key, value)
    return ws


def _first_document(text: str) -> dict:
    return next(iter(yaml.safe_load_all(text)))


def test_tune_runs_before_train_and_feeds_it(tmp_path):
    """Tune (under dsl.If(tune), see tests/pipelines/test_graph.py) takes Record's dataset and feeds its Train."""
    spec = _first_document(pipeline.compile_pipeline(tmp_path / "p.yaml").read_text())
    (branch,) = [c for c in spec["components"].values() if "tune" in c.get("dag", {}).get("tasks", {})]
    tasks = branch["dag"]["tasks"]
    assert "dependentTasks" not in tasks["tune"] and tasks["train"]["dependentTasks"] == ["tune"]
    assert tasks["tune"]["inputs"]["artifacts"]["dataset"] == {
        "componentInputArtifact": "pipelinechannel--record-dataset"
    }
    for name in ("epochs", "val_interval", "seed", "config"):
        assert tasks["tune"]["inputs"]["parameters"][name] == {"componentInputParameter": f"pipelinechannel--{name}"}
    assert tasks["train"]["inputs"]["parameters"]["hp_override"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "tune"}
    }
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["tune"]["defaultValue"] is False and params["tune_algorithm"]["defaultValue"] == "tpe"


def test_tune_flags():
    args = pipeline._parse_args(["--run", "--tune", "--tune-algorithm", "random", "--tune-max-trials", "5"])
    values = pipeline.pipeline_arguments(args)
    assert values["tune"] is True and values["tune_algorithm"] == "random" and values["tune_max_trials"] == 5
    assert pipeline.pipeline_arguments(pipeline._parse_args(["--run"]))["tune"] is False
    args = pipeline._parse_args(["--katib", "--tune-backend", "local", "--tune-name", "my-study"])
    assert args.katib and not args.run
    options = tuning_cli.options_from_args(args)
    assert options.name == "my-study" and options.data == pipeline.DEFAULTS["annotation_version"]
    assert options.fixed == {k: pipeline.DEFAULTS[k] for k in ("epochs", "val_interval", "seed")}
    with pytest.raises(SystemExit):
        pipeline._parse_args(["--katib", "--run"])


def test_train_refuses_an_override_that_is_not_hyperparameters(tmp_path, workspace, monkeypatch):
    monkeypatch.setenv("ALPR_RUN_NAME", "r")  # the run a pipeline task belongs to
    with pytest.raises(ValueError, match="hp_override: momentum are not hyperparameters"):
        train.python_func(
            dataset=Dataset(uri=str(tmp_path)),
            config="rtmdet_tiny_alpr.py",
            lr=0.004,
            epochs=1,
            batch_size=4,
            input_size=128,
            weight_decay=0.05,
            val_interval=1,
            seed=0,
            plate_input_size=0,
            plate_epochs=1,
            load_from="",
            train_workers=1,
            train_gpus_per_worker=0,
            model=Model(uri=str(tmp_path / "m")),
            metrics=Metrics(uri=str(tmp_path / "x")),
            hp_override='{"momentum": 0.9}',
        )


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig pointing at the in-memory Kubernetes API (as on a developer's machine with a cluster)."""
    with serve_kubernetes() as api:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", api.url, NS)))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        from alpr.tuning.katib import custom_objects_api

        yield custom_objects_api()


def test_katib_on_a_cluster_prints_the_best_trial_and_feeds_a_run(kubeconfig, workspace, capsys):
    ws = workspace
    controller = katib_controller(kubeconfig, "cli-tune")
    code = pipeline.main(
        [
            "--katib",
            "--tune-name",
            "cli-tune",
            "--tune-poll",
            "0.05",
            "--workspace",
            str(ws),
            "--tune-algorithm",
            "bayesianoptimization",
            "--epochs",
            "6",
            "--val-interval",
            "2",
        ]
    )
    controller.join(5)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Katib Experiment" in out and "best trial:     cli-tune-succeeded  eir=0.71" in out
    exp = kubeconfig.get_namespaced_custom_object("kubeflow.org", "v1beta1", NS, "experiments", "cli-tune")
    assert exp["spec"]["algorithm"]["algorithmName"] == "bayesianoptimization"
    args = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--epochs=6" in args and "--val-interval=2" in args and "--data=annotations-v1" in args
    saved = json.loads((ws / "tuning" / "cli-tune.json").read_text())
    best = {p.name: next(p.walk()) for p in default_space()}
    assert saved["hyperparameters"] == {"epochs": 6, "val_interval": 2, "seed": 0, **default_space().convert(best)}
    # --run --params-from-tuning takes the study's best parameters over the flags.
    run_args = pipeline._parse_args(
        ["--run", "--params-from-tuning", "cli-tune", "--workspace", str(ws), "--lr", "0.5"]
    )
    tuned = tuning_cli.apply_tuned_params(run_args, Settings(workspace=ws))
    assert tuned == saved["hyperparameters"]
    assert pipeline.pipeline_arguments(run_args)["lr"] == saved["hyperparameters"]["lr"]
    assert pipeline.pipeline_arguments(run_args)["epochs"] == 6


def test_katib_failure_exits_non_zero_with_katibs_reason(kubeconfig, workspace, capsys):
    controller = katib_controller(kubeconfig, "cli-fails", end="Failed")
    code = pipeline.main(["--katib", "--tune-name", "cli-fails", "--tune-poll", "0.05", "--workspace", str(workspace)])
    controller.join(5)
    assert code == 1
    assert "error: Katib Experiment kubeflow/cli-fails failed: ExperimentFailed" in capsys.readouterr().out
    store = MetadataStore(Settings(workspace=workspace).db_url)
    assert store.get_tuning_study("cli-fails")["status"] == "failed"


@pytest.mark.slow
def test_make_tune_locally(workspace, tmp_path, monkeypatch, capsys):
    """``python pipeline.py --katib`` without a cluster: bootstrap, the training version Record would make, two real
    trials of the default search space (1 epoch each), the best printed, saved and recorded."""
    ws = workspace
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    code = pipeline.main(
        [
            "--katib",
            "--workspace",
            str(ws),
            "--bootstrap-images",
            "20",
            "--tune-name",
            "local-tune",
            "--epochs",
            "1",
            "--val-interval",
            "1",
            "--tune-max-trials",
            "2",
            "--tune-parallel",
            "1",
            "--train-fraction",
            "0.6",
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "local Optuna twin" in out and "=== ALPR tuning finished (optuna, succeeded) ===" in out
    store = MetadataStore(Settings(workspace=ws).db_url)
    study = store.get_tuning_study("local-tune")
    assert study["status"] == "succeeded" and study["settings"]["data"] == "annotations-v1"
    trials = store.tuning_trials("local-tune")
    assert [t["state"] for t in trials] == ["succeeded", "succeeded"]
    assert {t["params"]["input_size"] for t in trials} <= set(default_space()["input_size"].values)
    # The trials trained on the training version Record records for these flags.
    (tv,) = store.list_training_versions()
    assert tv["fractions"] == (0.6, 0.2, 0.2)
    assert (ws / "tuning" / "local-tune.json").is_file()


@pytest.mark.slow
def test_the_tune_step_on_finds_parameters_for_train(tiny_coco, workspace, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_coco, dataset)
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    monkeypatch.setenv("ALPR_RUN_NAME", "Run 1/2")  # the task's run: the study is named after it
    out = tune.python_func(
        dataset=Dataset(uri=str(dataset)),
        config="rtmdet_tiny_alpr.py",
        epochs=1,
        val_interval=1,
        seed=0,
        algorithm="random",
        max_trials=1,
        parallel=1,
        max_failed=0,
        timeout_s=0,
        metrics=metrics,
    )
    best = json.loads(out)
    assert set(best) == {"epochs", "val_interval", "seed", *default_space().names}
    assert metrics.metadata["trials"] == 1 and "best_eir" in metrics.metadata
    study = MetadataStore(Settings(workspace=workspace).db_url).get_tuning_study(metrics.metadata["study"])
    assert study["best_params"] == best and study["name"].startswith("tune-run-1-2-")
