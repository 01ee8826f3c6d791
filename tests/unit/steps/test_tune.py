"""The Tune step (alpr.steps.tune): the study's options for a run, and what the step refuses or records before any
trial trains. A study that trains is tested by tests/integration/test_tuning_pipeline.py (slow)."""

import re
import sqlite3

import pytest

from alpr.metadata import MetadataStore
from alpr.settings import Settings
from alpr.steps.lineage import DatasetLineage, LineageError
from alpr.steps.tune import tune_step, tuning_options
from alpr.tuning.options import TuningOptions

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
STEP = dict(
    run_name="nightly-run-7",
    config="rtmdet_tiny_alpr.py",
    epochs=4,
    val_interval=2,
    seed=11,
    algorithm="random",
    max_trials=3,
    parallel=1,
    max_failed=0,
    timeout_s=0,
)


@pytest.fixture
def off_cluster(monkeypatch, tmp_path):
    """No Kubernetes API configured (no service account, no kubeconfig): the step runs the local twin."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))


@pytest.fixture
def in_a_pod(monkeypatch):
    """A pod's environment: the step reads the training version from Record's lineage (and would create a Katib
    Experiment)."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")


def test_the_study_is_named_after_the_run_with_the_fixed_hyperparameters():
    options = tuning_options(data="annotations-v1", **STEP)
    assert isinstance(options, TuningOptions)
    assert options.name.startswith("tune-nightly-run-7-")
    assert DNS_1123_LABEL.fullmatch(options.name) and len(options.name) <= 40
    assert options.fixed == {"epochs": 4, "val_interval": 2, "seed": 11}
    assert (options.data, options.config, options.algorithm) == ("annotations-v1", "rtmdet_tiny_alpr.py", "random")
    assert (options.max_trials, options.parallel, options.max_failed) == (3, 1, 0)
    assert tuning_options(data="d", **STEP).name != options.name  # a retried step: a new study


def test_timeout_zero_means_no_limit():
    assert tuning_options(data="d", **STEP).timeout_s is None
    assert tuning_options(data="d", **{**STEP, "timeout_s": 900}).timeout_s == 900


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (dict(max_trials=0), "max_trials=0"),
        (dict(parallel=-1), "parallel=-1"),
        (dict(max_failed=-1), "max_failed=-1"),
        (dict(algorithm="grid"), "algorithm='grid'"),
        (dict(timeout_s=-5), "timeout_s=-5"),
    ],
)
def test_a_bad_value_raises_naming_it(bad, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        tuning_options(data="d", **{**STEP, **bad})


def test_the_step_refuses_bad_values_before_any_work(tmp_path, off_cluster):
    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="max_trials=0"):
        tune_step(settings, dataset_dir=tmp_path, **{**STEP, "max_trials": 0})
    assert not any(settings.workspace.rglob("metadata.db"))  # no study recorded


def test_off_cluster_a_folder_that_is_not_records_output_fails_the_study(tmp_path, off_cluster):
    """The local twin trains on the folder: one that is not a training version fails before any trial, and the
    study (named after the run, with the step's fixed hyperparameters) is recorded failed."""
    settings = Settings(workspace=tmp_path / "ws")
    (tmp_path / "dataset").mkdir()
    with pytest.raises(FileNotFoundError, match="folder without annotations/train.json"):
        tune_step(settings, dataset_dir=tmp_path / "dataset", **STEP)
    db = settings.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        (name,) = [row[0] for row in conn.execute("SELECT name FROM tuning_studies")]
    assert name.startswith("tune-nightly-run-7-")
    study = MetadataStore(settings.db_url).get_tuning_study(name)
    assert study["status"] == "failed" and study["settings"]["fixed"] == {"epochs": 4, "val_interval": 2, "seed": 11}
    assert study["settings"]["data"] == str(tmp_path / "dataset")


def test_in_a_pod_the_dataset_must_be_records_output(tmp_path, in_a_pod):
    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(FileNotFoundError, match="lineage.json missing"):
        tune_step(settings, dataset_dir=tmp_path, **STEP)
    (tmp_path / "lineage.json").write_text('{"candidates": [], "val_metrics": {}}')
    with pytest.raises(LineageError, match=f"{re.escape(str(tmp_path / 'lineage.json'))}: missing field"):
        tune_step(settings, dataset_dir=tmp_path, **STEP)
    assert not any(settings.workspace.rglob("metadata.db"))


def test_in_a_pod_bad_values_are_refused_before_katib_is_called(tmp_path, in_a_pod):
    DatasetLineage(
        annotation_version="annotations-v1",
        training_version="annotations-v1-tv-abc",
        git_rev="0" * 40,
        dataset_repo="https://example.invalid/repo.git",
        counts={"splits": {}, "classes": {}},
        created=True,
        run_name="nightly-run-7",
    ).write(tmp_path)
    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="algorithm='grid'"):
        tune_step(settings, dataset_dir=tmp_path, **{**STEP, "algorithm": "grid"})
