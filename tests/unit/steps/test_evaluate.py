"""The Evaluate step (alpr.steps.evaluate): what it refuses before evaluating anything, and its run bookkeeping.
Evaluating trained candidates is tested by tests/components/test_components.py (a tiny trained model)."""

import re

import pytest

from alpr.metadata import MetadataStore
from alpr.settings import Settings
from alpr.steps.evaluate import evaluate_step
from alpr.steps.lineage import DatasetLineage, LineageError
from alpr.steps.runs import ensure_run

RECORD_LINEAGE = DatasetLineage(
    annotation_version="annotations-v1",
    training_version="annotations-v1-tv-abc",
    git_rev="a" * 40,
    dataset_repo="/ws/dataset.git",
    counts={"splits": {}, "classes": {}},
    created=True,
    run_name="ev-run",
)


@pytest.fixture
def settings(tmp_path):
    s = Settings(workspace=tmp_path / "ws")
    ensure_run(s, "ev-run", {})
    return s


def _evaluate(settings, tmp_path, candidates_dir):
    return evaluate_step(
        settings,
        data_root=tmp_path / "dataset",
        candidates_dir=candidates_dir,
        out_dir=tmp_path / "selected",
        run_name="ev-run",
    )


def _run_status(settings) -> str:
    return MetadataStore(settings.db_url).get_run("ev-run")["status"]


def test_a_folder_without_lineage_is_not_trains_output(settings, tmp_path):
    (tmp_path / "candidates").mkdir()
    with pytest.raises(FileNotFoundError, match="lineage.json missing: .* was not written by this pipeline"):
        _evaluate(settings, tmp_path, tmp_path / "candidates")
    assert _run_status(settings) == "failed"
    assert not (tmp_path / "selected").exists()


def test_records_output_is_not_trains_and_the_error_names_the_file(settings, tmp_path):
    folder = tmp_path / "dataset-not-candidates"
    folder.mkdir()
    path = RECORD_LINEAGE.write(folder)
    with pytest.raises(LineageError, match=re.escape(str(path))) as exc:
        _evaluate(settings, tmp_path, folder)
    assert "not a CandidatesLineage (the lineage Train writes)" in str(exc.value)
    assert "missing field(s)" in str(exc.value) and "candidates" in str(exc.value)
    assert _run_status(settings) == "failed"
    assert not (tmp_path / "selected").exists()


def test_a_lineage_that_is_not_json_is_named(settings, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "lineage.json").write_text("not json")
    with pytest.raises(LineageError, match=re.escape(str(tmp_path / "c" / "lineage.json")) + ": not JSON"):
        _evaluate(settings, tmp_path, tmp_path / "c")
    assert _run_status(settings) == "failed"
