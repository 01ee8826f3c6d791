"""Run bookkeeping shared by the steps (alpr.steps.runs): the pipeline_runs row, marking a run failed, KFP metrics.

Every test uses a real SQLite metadata store in ``tmp_path``."""

import logging
import math

import pytest

from alpr.kubeflow.platform import RUN_NAME_ENV
from alpr.metadata import RUN_RUNNING, MetadataStore
from alpr.settings import Settings
from alpr.steps.runs import (
    RUN_CANCELED,
    RUN_FAILED,
    RUN_SUCCEEDED,
    RunNameMissing,
    current_run,
    current_run_name,
    ensure_run,
    finish_run_step,
    finite_metrics,
    mark_run_failed,
    marks_run_failed,
    open_store,
    run_host,
    run_status_of,
)


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


# -- the run of a task: ALPR_RUN_NAME, not an input


def test_current_run_name_reads_the_environment(monkeypatch):
    assert current_run_name({RUN_NAME_ENV: "  run-7 "}) == "run-7"
    monkeypatch.setenv(RUN_NAME_ENV, "from-env")
    assert current_run_name() == "from-env"


@pytest.mark.parametrize("environ", [{}, {RUN_NAME_ENV: ""}, {RUN_NAME_ENV: "   "}])
def test_current_run_name_without_the_variable_says_which(environ):
    with pytest.raises(RunNameMissing, match="ALPR_RUN_NAME is not set"):
        current_run_name(environ)


def test_run_host_is_kubernetes_in_a_pod():
    assert run_host({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "kubernetes"
    assert run_host({}) == "local"


def test_current_run_creates_the_row_a_cached_upstream_step_did_not(settings, monkeypatch):
    monkeypatch.setenv(RUN_NAME_ENV, "cached-upstream")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert open_store(settings).get_run("cached-upstream") is None
    assert current_run(settings, {"epochs": 2}) == "cached-upstream"
    run = _store(settings).get_run("cached-upstream")
    assert run["status"] == RUN_RUNNING and run["parameters"] == {"epochs": 2} and run["host"] == "local"
    assert current_run(settings) == "cached-upstream"  # the next step: the row is kept as it is
    assert _store(settings).get_run("cached-upstream")["parameters"] == {"epochs": 2}


# -- how a run ends: the exit handler's bookkeeping


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("COMPLETE", RUN_SUCCEEDED),  # the KFP v2 backend: the exit-handler group's MLMD execution state
        ("CACHED", RUN_SUCCEEDED),
        ("SUCCEEDED", RUN_SUCCEEDED),  # the SDK's documentation (and kfp.local's outcome in pipelines.run)
        ("succeeded", RUN_SUCCEEDED),
        ("FAILED", RUN_FAILED),
        ("CANCELED", RUN_CANCELED),
        ("CANCELLED", RUN_CANCELED),
        ("", RUN_FAILED),
        ("SOMETHING_NEW", RUN_FAILED),
    ],
)
def test_run_status_of_maps_kfp_final_states(state, status):
    assert run_status_of(state) == status


def test_finish_run_step_succeeded_overrides_a_retried_steps_failed_mark(settings):
    ensure_run(settings, "retried", {"seed": 1})
    assert mark_run_failed(settings, "retried")  # a step failed once, then its KFP retry succeeded
    outcome = finish_run_step(settings, run_name="retried", state="COMPLETE", failed_task="exit-handler-1")
    assert (outcome.status, outcome.message) == (RUN_SUCCEEDED, "")
    run = _store(settings).get_run("retried")
    assert run["status"] == "succeeded" and run["finished_at"] is not None and run["parameters"] == {"seed": 1}


def test_finish_run_step_failed_keeps_the_reason(settings, caplog):
    caplog.set_level(logging.ERROR, logger="alpr.steps.runs")
    ensure_run(settings, "broken", {})
    outcome = finish_run_step(
        settings, run_name="broken", state="FAILED", message="Train: CUDA out of memory", failed_task="exit-handler-1"
    )
    assert outcome.status == RUN_FAILED == _store(settings).get_run("broken")["status"]
    assert outcome.message == "exit-handler-1 ended FAILED; Train: CUDA out of memory"
    assert "run broken failed: exit-handler-1 ended FAILED; Train: CUDA out of memory" in caplog.text
    # no error reported at all: the state still says what happened
    assert finish_run_step(settings, run_name="broken", state="CANCELED").message == "ended CANCELED"
    assert _store(settings).get_run("broken")["status"] == "canceled"


def test_finish_run_step_records_a_run_no_step_recorded(settings):
    """Every step cached, or the first one failed before it recorded the run: the run is still finished."""
    outcome = finish_run_step(settings, run_name="never-recorded", state="FAILED")
    assert outcome.message == "ended FAILED"
    run = _store(settings).get_run("never-recorded")
    assert run["status"] == "failed" and run["finished_at"] is not None


def test_finish_run_step_refuses_an_empty_run_name(settings):
    with pytest.raises(ValueError, match="run_name is empty"):
        finish_run_step(settings, run_name="", state="COMPLETE")
