"""Run bookkeeping shared by the steps (alpr.steps.runs): the pipeline_runs row, marking a run failed, KFP metrics.

Every test uses a real SQLite metadata store in ``tmp_path``."""

import logging
import math

import pytest

from alpr.metadata import RUN_RUNNING, MetadataStore
from alpr.settings import Settings
from alpr.steps.runs import RUN_FAILED, ensure_run, finite_metrics, mark_run_failed, marks_run_failed, open_store


@pytest.fixture
def settings(tmp_path):
    return Settings(workspace=tmp_path / "ws")


def _store(settings) -> MetadataStore:
    return MetadataStore(settings.db_url)


@pytest.fixture
def unreachable(tmp_path):
    """Settings whose SQLite file cannot exist (its folder is a regular file)."""
    (tmp_path / "a-file").write_text("")
    return Settings(workspace=tmp_path / "ws2", db_url=f"sqlite:///{tmp_path / 'a-file' / 'metadata.db'}")


def test_finite_metrics_replaces_nan_and_none_with_zero():
    out = finite_metrics({"eir": math.nan, "mAP": None, "loss": 0.25, "n": 3})
    assert out == {"eir": 0.0, "mAP": 0.0, "loss": 0.25, "n": 3.0}
    assert all(isinstance(v, float) for v in out.values())
    assert finite_metrics({}) == {}


def test_open_store_creates_the_schema(settings):
    store = open_store(settings)
    assert store.get_run("nothing") is None  # the tables exist


def test_ensure_run_creates_the_row_once(settings):
    ensure_run(settings, "r1", {"seed": 0}, host="kfp")
    first = _store(settings).get_run("r1")
    assert first["status"] == RUN_RUNNING
    ensure_run(settings, "r1", {"seed": 99}, host="elsewhere")  # a retried step: nothing changes
    assert _store(settings).get_run("r1") == first


def test_mark_run_failed_changes_a_running_run_only(settings):
    assert mark_run_failed(settings, None) is False
    assert mark_run_failed(settings, "") is False
    assert mark_run_failed(settings, "never-started") is False
    assert _store(settings).get_run("never-started") is None  # not created

    ensure_run(settings, "r2", {})
    assert mark_run_failed(settings, "r2") is True
    run = _store(settings).get_run("r2")
    assert run["status"] == RUN_FAILED == "failed" and run["finished_at"] is not None

    ensure_run(settings, "r3", {})
    with _store(settings).transaction() as tx:
        tx.finish_run("r3", "succeeded")
    assert mark_run_failed(settings, "r3") is False
    assert _store(settings).get_run("r3")["status"] == "succeeded"
    assert mark_run_failed(settings, "r2") is False  # already failed: unchanged


def test_mark_run_failed_never_raises(unreachable, caplog):
    caplog.set_level(logging.WARNING, logger="alpr.steps.runs")
    assert mark_run_failed(unreachable, "r") is False
    assert "could not mark run r failed" in caplog.text


@marks_run_failed
def _step(settings: Settings, *, run_name: str, fail: BaseException | None = None) -> str:
    """A step that starts its run, then raises ``fail`` (if given)."""
    ensure_run(settings, run_name, {})
    if fail is not None:
        raise fail
    return f"done {run_name}"


def test_marks_run_failed_keeps_a_successful_step_unchanged(settings):
    assert _step(settings, run_name="ok") == "done ok"
    assert _store(settings).get_run("ok")["status"] == RUN_RUNNING
    assert _step.__name__ == "_step" and "A step that starts its run" in _step.__doc__


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_marks_run_failed_marks_the_run_and_reraises(settings, error):
    with pytest.raises(type(error)) as exc:
        _step(settings, run_name="bad", fail=error)
    assert exc.value is error  # the step's own error, unchanged
    run = _store(settings).get_run("bad")
    assert run["status"] == RUN_FAILED and run["finished_at"] is not None


def test_the_steps_error_wins_over_an_unreachable_store(unreachable):
    @marks_run_failed
    def step(settings, *, run_name):
        raise ValueError("the step's own error")

    with pytest.raises(ValueError, match="the step's own error"):
        step(unreachable, run_name="r")
