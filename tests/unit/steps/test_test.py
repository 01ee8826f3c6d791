"""The Test step (alpr.steps.test): what it refuses before reading any image, and its run bookkeeping. Reading the
test split with a tiny trained model is tested by tests/components/test_components.py."""

import re

import pytest

from alpr.metadata import MetadataStore
from alpr.settings import Settings
from alpr.steps.lineage import CandidatesLineage, LineageError, ModelLineage
from alpr.steps.runs import ensure_run
from alpr.steps.test import REPORT_LINEAGE
from alpr.steps.test import test_step as run_test_step  # aliased: a step, not a pytest test

TRAIN_LINEAGE = CandidatesLineage(
    annotation_version="annotations-v1",
    training_version="annotations-v1-tv-abc",
    git_rev="a" * 40,
    hyperparameters={"lr": 0.004},
    config="rtmdet_tiny_alpr.py",
    config_hash="c" * 64,
    candidates=["epoch_1.pth"],
    train_uri="/ws/storage/runs/t-run/train",
    tensorboard_uri=None,
    val_metrics={"plate/eir": 0.5},
    run_name="t-run",
)


@pytest.fixture
def settings(tmp_path):
    s = Settings(workspace=tmp_path / "ws")
    ensure_run(s, "t-run", {})
    return s


def _test(settings, tmp_path, model_dir):
    return run_test_step(
        settings, data_root=tmp_path / "dataset", model_dir=model_dir, report_dir=tmp_path / "report", run_name="t-run"
    )


def _run(settings) -> dict:
    return MetadataStore(settings.db_url).get_run("t-run")


def test_the_report_shows_fields_of_the_model_lineage():
    assert set(REPORT_LINEAGE) <= ModelLineage.field_names()


def test_a_folder_without_lineage_is_not_evaluates_output(settings, tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(FileNotFoundError, match="lineage.json missing"):
        _test(settings, tmp_path, tmp_path / "model")
    run = _run(settings)
    assert run["status"] == "failed" and run["finished_at"] is not None  # not "succeeded", not left running
    assert not (tmp_path / "report").exists()


def test_trains_output_is_not_evaluates_and_the_error_names_the_file(settings, tmp_path):
    folder = tmp_path / "candidates-not-model"
    folder.mkdir()
    path = TRAIN_LINEAGE.write(folder)
    with pytest.raises(LineageError, match=re.escape(str(path))) as exc:
        _test(settings, tmp_path, folder)
    assert "not a ModelLineage (the lineage Evaluate writes)" in str(exc.value)
    assert "missing field(s)" in str(exc.value) and "model_id" in str(exc.value)
    assert "unknown field(s)" in str(exc.value) and "val_metrics" in str(exc.value)
    assert _run(settings)["status"] == "failed"
    assert not (tmp_path / "report").exists()
