"""Run bookkeeping shared by the steps: which run a task belongs to, the ``pipeline_runs`` row, marking a run
failed, finishing it (the pipeline's exit handler), KFP-safe metrics.

A task learns its run from the environment variable :data:`~alpr.kubeflow.platform.RUN_NAME_ENV`
(``ALPR_RUN_NAME``), not from an input: an input that changes every run would change every task's KFP cache key.
On a cluster :func:`alpr.kubeflow.platform.apply_platform` sets it from the pod's ``pipeline/runid`` label (the KFP
run id); locally :mod:`pipelines.run` sets it before ``kfp.local`` starts the tasks.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from alpr.kubeflow.platform import RUN_NAME_ENV
from alpr.metadata import RUN_RUNNING, AlreadyExists, MetadataStore
from alpr.settings import Settings

log = logging.getLogger(__name__)

#: Status of a run whose steps all succeeded (set by :func:`finish_run_step`).
RUN_SUCCEEDED: Final = "succeeded"
#: Status a run gets when one of its steps raises (see :func:`marks_run_failed`) or when it ends in failure.
RUN_FAILED: Final = "failed"
#: Status of a run that was cancelled (KFP's ``CANCELED`` / ``CANCELLED``).
RUN_CANCELED: Final = "canceled"
#: The final task states :func:`run_status_of` maps to :data:`RUN_SUCCEEDED`: the KFP v2 backend reports the
#: exit-handler group's MLMD execution state (``COMPLETE``, ``CACHED``; backend/src/v2/driver/resolve.go), Vertex
#: and the SDK's documentation say ``SUCCEEDED``.
SUCCEEDED_STATES: Final = frozenset({"SUCCEEDED", "COMPLETE", "CACHED"})
#: The final task states :func:`run_status_of` maps to :data:`RUN_CANCELED`; every other state is a failure.
CANCELED_STATES: Final = frozenset({"CANCELED", "CANCELLED"})

StepFn = TypeVar("StepFn", bound=Callable)


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics with NaN (and None) replaced by 0.0 for sinks that reject NaN (KFP Metrics); the DB keeps NaN as NULL."""
    return {k: (0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for k, v in metrics.items()}


def open_store(settings: Settings) -> MetadataStore:
    """The metadata store of ``settings``, its schema created if needed."""
    store = MetadataStore(settings.db_url)
    store.create_schema()
    return store


class RunNameMissing(LookupError):
    """The task was started without :data:`~alpr.kubeflow.platform.RUN_NAME_ENV` (not by the pipeline)."""


def current_run_name(environ: Mapping[str, str] | None = None) -> str:
    """The name of the pipeline run this task belongs to: ``$ALPR_RUN_NAME`` (``environ``, default
    ``os.environ``), stripped.

    Raises:
        RunNameMissing: the variable is unset or empty (a component called outside a pipeline run).
    """
    name = (os.environ if environ is None else environ).get(RUN_NAME_ENV, "").strip()
    if not name:
        raise RunNameMissing(
            f"{RUN_NAME_ENV} is not set: the pipeline sets it in every task (on a cluster from the pod's "
            "'pipeline/runid' label, locally in pipelines.run); set it to run a component by hand"
        )
    return name


def run_host(environ: Mapping[str, str] | None = None) -> str:
    """Where a run's tasks run, as recorded in ``pipeline_runs.host``: ``kubernetes`` in a pod (the
    ``KUBERNETES_SERVICE_HOST`` variable every pod gets), else ``local``."""
    return "kubernetes" if (os.environ if environ is None else environ).get("KUBERNETES_SERVICE_HOST") else "local"


def current_run(settings: Settings, parameters: Mapping | None = None) -> str:
    """The run of this task (:func:`current_run_name`), its ``pipeline_runs`` row created if missing.

    A step whose upstream steps came from the KFP cache is the first of its run to run, so every recording step
    makes sure the row exists (``parameters``: recorded only when it is created; default ``{}``).

    Raises:
        RunNameMissing: see :func:`current_run_name`.
    """
    name = current_run_name()
    ensure_run(settings, name, dict(parameters or {}), host=run_host())
    return name


def ensure_run(settings: Settings, run_name: str, parameters: dict, host: str = "local") -> None:
    """Create the ``pipeline_runs`` row of ``run_name`` unless it exists (steps may be retried)."""
    store = open_store(settings)
    if store.get_run(run_name) is None:
        try:
            with store.transaction() as tx:
                tx.start_run(run_name, parameters, host)
        except AlreadyExists:
            pass


def mark_run_failed(settings: Settings, run_name: str | None) -> bool:
    """Set run ``run_name``'s status to :data:`RUN_FAILED` (with its finish time) if it is recorded and still
    running; return whether it was changed.

    Never raises: a store that cannot be reached is logged as a warning, so the step's own error is what the
    user sees.
    """
    if not run_name:
        return False
    try:
        store = open_store(settings)
        run = store.get_run(run_name)
        if run is None or run["status"] != RUN_RUNNING:
            return False
        with store.transaction() as tx:
            tx.finish_run(run_name, RUN_FAILED)
        log.info("run %s marked %s", run_name, RUN_FAILED)
        return True
    except Exception as exc:  # the step's own error matters more than this bookkeeping
        log.warning("could not mark run %s %s: %s", run_name, RUN_FAILED, exc)
        return False


def marks_run_failed(step: StepFn) -> StepFn:
    """Decorate a step ``step(settings, *, run_name=..., ...)``: when it raises (an interrupt included), its
    ``pipeline_runs`` row is set to :data:`RUN_FAILED` by :func:`mark_run_failed`, then the error propagates.

    Without it a failed run would stay ``running`` in the metadata store forever. A step retried later (KFP
    retries) that succeeds still ends the run ``succeeded``: :func:`finish_run_step` (the pipeline's exit handler
    on a cluster, :mod:`pipelines.run` locally) has the last word.
    """

    @functools.wraps(step)
    def wrapper(settings: Settings, *args, **kwargs):
        try:
            return step(settings, *args, **kwargs)
        except BaseException:
            mark_run_failed(settings, kwargs.get("run_name"))
            raise

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class RunOutcome:
    """How a pipeline run ended, as :func:`finish_run_step` recorded it.

    Attributes:
        run_name: the run.
        status: :data:`RUN_SUCCEEDED`, :data:`RUN_FAILED` or :data:`RUN_CANCELED` (the ``pipeline_runs`` status).
        state: the final state reported (KFP's, e.g. ``COMPLETE``, ``FAILED``; locally ``SUCCEEDED``/``FAILED``).
        message: why it did not succeed (which task or group ended in which state, and its error as far as
            known); ``""`` when it succeeded.
    """

    run_name: str
    status: str
    state: str
    message: str = ""


def run_status_of(state: str) -> str:
    """The ``pipeline_runs`` status of a final task state (case-insensitive): :data:`SUCCEEDED_STATES` →
    :data:`RUN_SUCCEEDED`, :data:`CANCELED_STATES` → :data:`RUN_CANCELED`, anything else (``FAILED``, ``""``,
    an unknown state) → :data:`RUN_FAILED`."""
    state = (state or "").strip().upper()
    if state in SUCCEEDED_STATES:
        return RUN_SUCCEEDED
    if state in CANCELED_STATES:
        return RUN_CANCELED
    return RUN_FAILED


def finish_run_step(
    settings: Settings, *, run_name: str, state: str, message: str = "", failed_task: str = ""
) -> RunOutcome:
    """Set run ``run_name``'s final status from the pipeline's final ``state`` (:func:`run_status_of`), with its
    finish time; the row is created first if no step made it (all cached, or the first step failed early).

    The last word on a run's status: it overrides a ``failed`` left by :func:`marks_run_failed` when a retry of
    the step then succeeded. The metadata store has no column for the error, so ``message`` (and
    ``failed_task``) are logged and returned.

    Args:
        run_name: the run.
        state: the final state of the pipeline's tasks (KFP's ``PipelineTaskFinalStatus.state``).
        message: the error message reported with it, if any.
        failed_task: the task (or group of tasks) that ended in ``state``, if known.

    Returns:
        the recorded :class:`RunOutcome`.

    Raises:
        ValueError: ``run_name`` is empty.
        sqlalchemy.exc.SQLAlchemyError: the store cannot be reached (the exit task then fails, visibly).
    """
    if not run_name:
        raise ValueError("finish_run_step: run_name is empty")
    status = run_status_of(state)
    detail = ""
    if status != RUN_SUCCEEDED:
        where = (
            f"{failed_task} ended {state or 'without a state'}"
            if failed_task
            else f"ended {state or 'without a state'}"
        )
        detail = "; ".join(part for part in (where, message) if part)
    ensure_run(settings, run_name, {}, host=run_host())
    with open_store(settings).transaction() as tx:
        tx.finish_run(run_name, status)
    log.log(
        logging.INFO if status == RUN_SUCCEEDED else logging.ERROR,
        "run %s %s%s",
        run_name,
        status,
        f": {detail}" if detail else "",
    )
    return RunOutcome(run_name=run_name, status=status, state=state, message=detail)
