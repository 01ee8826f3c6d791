"""The local twin: Optuna over the same space, trials as subprocesses of the entry point, results in the store.

``test_three_tiny_trials`` trains for real (three tiny mmdetection runs through ``python -m alpr.tuning.trial``).
The tests of the tuner's mechanics (median stopping, failures, timeout) run ``tests/scripted_trial.py``, which
takes the entry point's command line and prints the same metric format with values known in advance.
"""

import sys
from pathlib import Path

import optuna
import pytest

from alpr.metadata import MetadataStore
from alpr.model.training import Hyperparameters
from alpr.tuning.collector import parse_lines
from alpr.tuning.local import LocalTuner, make_pruner, make_sampler, run_local
from alpr.tuning.options import TuningOptions
from alpr.tuning.results import load_tuned_params
from alpr.tuning.space import Parameter, SearchSpace

SCRIPTED = [sys.executable, str(Path(__file__).resolve().parents[2] / "scripted_trial.py")]
#: The project's parameter types at sizes a test can train in seconds.
TINY_SPACE = SearchSpace(
    (
        Parameter("lr", "double", 1e-3, 1e-2, distribution="logUniform"),
        Parameter("input_size", "discrete", values=(128,)),
        Parameter("batch_size", "discrete", values=(4,)),
    )
)


@pytest.fixture
def store(tmp_path):
    s = MetadataStore(f"sqlite:///{tmp_path / 'db' / 'metadata.db'}")
    s.create_schema()
    return s


class PruneTrial(optuna.pruners.BasePruner):
    """Tells the tuner to stop trial ``number`` at its first report."""

    def __init__(self, number: int) -> None:
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number


@pytest.mark.slow
def test_three_tiny_trials(tiny_coco, tmp_path, settings, store):
    """Three real trials (2 epochs at 128 px on 12 images); the second is told to stop at its first validation."""
    options = TuningOptions(
        name="tiny-local",
        data=str(tiny_coco),
        algorithm="tpe",
        max_trials=3,
        parallel=1,
        max_failed=0,
        num_workers=0,
        fixed={"epochs": 2, "val_interval": 1, "seed": 0},
    )
    lines = []
    outcome = run_local(
        settings,
        TINY_SPACE,
        options,
        store=store,
        work_root=tmp_path / "study",
        pruner=PruneTrial(1),
        on_progress=lines.append,
        enqueue=[{"lr": 0.008, "input_size": 128, "batch_size": 4}],
    )
    assert outcome.status == "succeeded", outcome.message
    rows = store.tuning_trials("tiny-local")
    assert [(r["name"], r["state"]) for r in rows] == [
        ("trial-0", "succeeded"),
        ("trial-1", "pruned"),
        ("trial-2", "succeeded"),
    ]
    for row in (rows[0], rows[2]):
        assert [s["step"] for s in row["intermediate"]] == [1, 2]  # a report after each epoch's validation
        assert set(row["intermediate"][0]) == {"step", "eir", "mAP", "loss"}
        assert row["value"] == max(s["eir"] for s in row["intermediate"])
        assert row["metrics"]["loss"] == row["intermediate"][-1]["loss"] > 0
    assert rows[0]["params"] == {"lr": 0.008, "input_size": 128, "batch_size": 4}
    pruned = rows[1]
    assert len(pruned["intermediate"]) == 1 and "stopped at step 1" in pruned["message"]
    assert not (tmp_path / "study" / "trial-1" / "train" / "epoch_2.pth").exists()  # its process was stopped
    log = (tmp_path / "study" / "trial-0" / "trial.log").read_text()
    assert log.count("alpr-metric eir=") == 2 and "final metrics: " in log
    # In the whole real output (mmengine's config dump and logs included) the filter finds exactly the reports.
    assert [o.name for o in parse_lines(log.splitlines(), ["eir", "mAP", "loss"])] == ["eir", "mAP", "loss"] * 2
    assert not list((tmp_path / "study" / "trial-0" / "train").glob("*.pth"))  # checkpoints are not kept

    best = max((rows[0], rows[2]), key=lambda r: r["value"])
    assert outcome.best_trial == best["name"] and outcome.best_value == best["value"]
    assert outcome.best_params == {"epochs": 2, "val_interval": 1, "seed": 0, **best["params"]}
    study = store.get_tuning_study("tiny-local")
    assert study["backend"] == "optuna" and study["status"] == "succeeded"
    assert study["best_params"] == outcome.best_params and study["best_value"] == best["value"]
    assert study["search_space"][0]["feasibleSpace"]["distribution"] == "logUniform"
    # The best parameters feed a pipeline run (python pipeline.py --run --params-from-tuning latest).
    assert load_tuned_params("latest", store) == outcome.best_params
    Hyperparameters(**load_tuned_params("tiny-local", store))
    assert any("trial-1 pruned" in line for line in lines)


def _tuner(tmp_path, store, space=TINY_SPACE, enqueue=(), **kwargs):
    options = TuningOptions(
        **{
            "name": "scripted",
            "data": str(tmp_path),
            "max_trials": 3,
            "parallel": 1,
            "fixed": {"epochs": 4, "val_interval": 1, "seed": 0},
            **kwargs,
        }
    )
    if store is not None:
        from alpr.tuning.results import start_study

        start_study(store, "optuna", space, options)
    return LocalTuner(
        space,
        options,
        data_root=tmp_path,
        work_root=tmp_path / "study",
        store=store,
        trial_command=SCRIPTED,
        enqueue=list(enqueue),
        on_progress=lambda line: None,
    )


def test_median_stop_prunes_the_trial_that_reports_poorly(tmp_path, store):
    """medianstop(min_trials_required=2, start_step=2): the third trial reports below the median at step 2."""
    good, poor = {"lr": 0.009, "input_size": 128, "batch_size": 4}, {"lr": 0.001, "input_size": 128, "batch_size": 4}
    tuner = _tuner(
        tmp_path, store, enqueue=[good, good, poor], early_stopping=True, min_trials_required=2, start_step=2
    )
    outcome = tuner.run()
    rows = store.tuning_trials("scripted")
    assert [r["state"] for r in rows] == ["succeeded", "succeeded", "pruned"]
    assert [s["step"] for s in rows[2]["intermediate"]] == [1, 2]  # stopped at start_step, not before
    assert rows[0]["value"] == pytest.approx(0.9)  # the objective's best observation
    assert outcome.status == "succeeded" and outcome.best_trial == "trial-0"
    assert outcome.best_metrics == {"eir": pytest.approx(0.9), "mAP": pytest.approx(0.45), "loss": 0.25}


def test_too_many_failed_trials_fail_the_study(tmp_path, store):
    crashing = SearchSpace((Parameter("lr", "double", 1e-3, 1e-2), Parameter("batch_size", "discrete", values=(16,))))
    tuner = _tuner(tmp_path, store, space=crashing, max_trials=5, max_failed=1, early_stopping=False)
    outcome = tuner.run()
    rows = store.tuning_trials("scripted")
    assert [r["state"] for r in rows] == ["failed", "failed"]  # stopped after the second failure
    assert "exit status 3" in rows[0]["message"] and "scripted crash" in rows[0]["message"]
    assert outcome.status == "failed" and "2 trials failed (maxFailedTrialCount 1)" in outcome.message
    assert outcome.best_trial is None


def test_the_timeout_stops_running_trials(tmp_path, store):
    """A 20 s trial and a 2 s timeout: the trial's process is stopped, the study ends as timed out."""
    tuner = _tuner(
        tmp_path, store, early_stopping=False, timeout_s=2.0, fixed={"epochs": 400, "val_interval": 1, "seed": 0}
    )
    outcome = tuner.run()
    assert outcome.status == "timeout" and outcome.best_trial is None
    (row,) = store.tuning_trials("scripted")
    assert row["state"] == "failed" and row["message"] == "killed at the study's timeout"
    assert len(row["intermediate"]) < 400  # stopped long before its last report


def test_algorithms_map_to_optuna_samplers_and_medianstop_to_the_median_pruner():
    assert isinstance(make_sampler("random", 0), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("tpe", 0), optuna.samplers.TPESampler)
    bayes = make_sampler("bayesianoptimization", 0)
    assert isinstance(bayes, getattr(optuna.samplers, "GPSampler", optuna.samplers.TPESampler))
    with pytest.raises(ValueError, match="unknown algorithm 'grid'"):
        make_sampler("grid")
    pruner = make_pruner(TuningOptions(name="x", min_trials_required=3, start_step=2))
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (3, 2)
    assert isinstance(make_pruner(TuningOptions(name="x", early_stopping=False)), optuna.pruners.NopPruner)


def test_tuned_parameters_load_from_a_file_and_bad_ones_are_named(tmp_path, store):
    path = tmp_path / "best.json"
    path.write_text('{"hyperparameters": {"lr": 0.002, "input_size": 256}}')
    assert load_tuned_params(str(path)) == {"lr": 0.002, "input_size": 256}
    path.write_text('{"lr": 0.002, "momentum": 0.9}')
    with pytest.raises(ValueError, match="momentum not Hyperparameters fields"):
        load_tuned_params(str(path))
    path.write_text('{"input_size": 300}')
    with pytest.raises(ValueError, match="input_size=300"):
        load_tuned_params(str(path))
    with pytest.raises(LookupError, match="no finished tuning study in the metadata store"):
        load_tuned_params("latest", store)
    with pytest.raises(LookupError, match="no study 'nope'"):
        load_tuned_params("nope", store)
