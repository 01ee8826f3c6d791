"""The Record step (alpr.steps.record): its input checks and its run bookkeeping, with a real SQLite store and no
dataset repository. Recording a version for real is tested by tests/components/test_components.py and
tests/integration/test_backends.py."""

import pytest

from alpr.data.repo import DatasetRepoError
from alpr.metadata import MetadataStore
from alpr.settings import Settings
from alpr.steps.record import record_step


@pytest.fixture
def settings(tmp_path):
    return Settings(workspace=tmp_path / "ws")


def _record(settings, tmp_path, *, annotation_version, fractions, run_name):
    return record_step(
        settings,
        annotation_version=annotation_version,
        fractions=fractions,
        seed=0,
        run_name=run_name,
        out_dir=tmp_path / "out",
    )


def test_an_unregistered_version_is_refused_and_the_run_marked_failed(settings, tmp_path):
    with pytest.raises(DatasetRepoError, match="annotation version 'v404' is not registered"):
        _record(settings, tmp_path, annotation_version="v404", fractions=(0.8, 0.1, 0.1), run_name="rec-1")
    run = MetadataStore(settings.db_url).get_run("rec-1")
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["parameters"] == {"annotation_version": "v404", "fractions": [0.8, 0.1, 0.1], "seed": 0}
    assert not (tmp_path / "out" / "lineage.json").exists()


def test_bad_fractions_are_refused_before_the_dataset_repository_is_touched(settings, tmp_path):
    with pytest.raises(ValueError, match="fraction"):
        _record(settings, tmp_path, annotation_version="v1", fractions=(0.8, 0.3, 0.1), run_name="rec-2")
    assert MetadataStore(settings.db_url).get_run("rec-2")["status"] == "failed"
    assert not (tmp_path / "out").exists()
