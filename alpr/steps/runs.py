"""Run bookkeeping shared by the steps: the ``pipeline_runs`` row, marking a run failed, KFP-safe metrics."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import TypeVar

from alpr.metadata import RUN_RUNNING, AlreadyExists, MetadataStore
from alpr.settings import Settings

log = logging.getLogger(__name__)

#: Status a run gets when one of its steps raises (see :func:`marks_run_failed`).
RUN_FAILED = "failed"

StepFn = TypeVar("StepFn", bound=Callable)


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics with NaN (and None) replaced by 0.0 for sinks that reject NaN (KFP Metrics); the DB keeps NaN as NULL."""
    return {k: (0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for k, v in metrics.items()}


def open_store(settings: Settings) -> MetadataStore:
    """The metadata store of ``settings``, its schema created if needed."""
    store = MetadataStore(settings.db_url)
    store.create_schema()
    return store


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
    retries) that succeeds still ends the run ``succeeded``: Test's :meth:`finish_run` is the last word.
    """

    @functools.wraps(step)
    def wrapper(settings: Settings, *args, **kwargs):
        try:
            return step(settings, *args, **kwargs)
        except BaseException:
            mark_run_failed(settings, kwargs.get("run_name"))
            raise

    return wrapper  # type: ignore[return-value]
