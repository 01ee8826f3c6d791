"""Where a study runs (alpr.tuning.run): the local twin's failure raised as TuningFailed and recorded; bad backends.

The Katib path (run_katib) is tested against an in-memory Kubernetes API in tests/unit/tuning/test_katib.py; the
local trials here are tests/scripted_trial.py (the entry point's command line, known metric values).
"""

import sys
from pathlib import Path

import pytest

from alpr.metadata import MetadataStore
from alpr.tuning.options import TuningOptions
from alpr.tuning.run import BACKENDS, TuningFailed, tune
from alpr.tuning.space import Parameter, SearchSpace

SCRIPTED = [sys.executable, str(Path(__file__).resolve().parents[2] / "scripted_trial.py")]


# Moved from tests/unit/tuning/test_local.py.
def test_tune_raises_when_the_local_study_fails(tmp_path, settings):
    crashing = SearchSpace((Parameter("lr", "double", 1e-3, 1e-2), Parameter("batch_size", "discrete", values=(16,))))
    options = TuningOptions(
        name="crashing",
        data=str(tmp_path),
        max_trials=2,
        parallel=2,
        max_failed=0,
        fixed={"epochs": 2, "val_interval": 1, "seed": 0},
    )
    (tmp_path / "annotations").mkdir()
    for split in ("train", "val"):
        (tmp_path / "annotations" / f"{split}.json").write_text("{}")
    with pytest.raises(TuningFailed, match="tuning study crashing failed: .*maxFailedTrialCount 0"):
        tune(settings, options, backend="local", space=crashing, trial_command=SCRIPTED, on_progress=lambda line: None)
    store = MetadataStore(settings.db_url)
    assert store.get_tuning_study("crashing")["status"] == "failed"
    assert {r["state"] for r in store.tuning_trials("crashing")} == {"failed"}


# New.
def test_an_unknown_backend_is_refused_before_any_work(tmp_path, settings):
    with pytest.raises(ValueError, match=r"unknown tuning backend 'kubeflow': one of auto, katib, local"):
        tune(settings, TuningOptions(name="nowhere", data=str(tmp_path)), backend="kubeflow")
    assert not any(settings.workspace.rglob("metadata.db"))  # no store opened
    assert BACKENDS == ("auto", "katib", "local")


def test_a_study_whose_data_cannot_be_resolved_is_recorded_failed(tmp_path, settings):
    """The local twin on a folder that is not a training version: the error names the missing file; the study is
    recorded failed with that message (not left running)."""
    options = TuningOptions(name="no-data", data=str(tmp_path), fixed={"epochs": 2, "val_interval": 1, "seed": 0})
    with pytest.raises(FileNotFoundError, match="folder without annotations/train.json"):
        tune(settings, options, backend="local", trial_command=SCRIPTED, on_progress=lambda line: None)
    study = MetadataStore(settings.db_url).get_tuning_study("no-data")
    assert study["status"] == "failed" and study["finished_at"] is not None
    assert "annotations/train.json" in study["message"]
