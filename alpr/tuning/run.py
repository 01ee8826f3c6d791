"""Run a tuning study where it can run: a Katib Experiment on a cluster, else the local Optuna twin.

What ``python pipeline.py --katib`` (``make tune``) and the pipeline's Tune step call. Both engines record the
study and its trials in the metadata store (:mod:`alpr.tuning.results`) and return a
:class:`~alpr.tuning.local.TuningOutcome` whose ``best_params`` a pipeline run can train with
(``python pipeline.py --run --params-from-tuning latest``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from alpr.metadata import MetadataStore
from alpr.tuning import katib
from alpr.tuning.local import TuningOutcome, run_local
from alpr.tuning.options import TuningOptions
from alpr.tuning.results import finish_study, record_trials, start_study
from alpr.tuning.space import SearchSpace, default_space

log = logging.getLogger(__name__)

#: Where a study runs: ``auto`` picks Katib when a Kubernetes API is configured (in a pod or a kubeconfig).
BACKENDS = ("auto", "katib", "local")


class TuningFailed(RuntimeError):
    """The study failed (too many failed trials, Katib's Failed, no trial completed), or timed out without a
    best trial; the message says why and where the study is recorded."""


def run_katib(
    space: SearchSpace,
    options: TuningOptions,
    *,
    store=None,
    api=None,
    poll_s: float = 15.0,
    on_progress: Callable[[str], None] = print,
) -> TuningOutcome:
    """Create the Katib Experiment of ``options``, follow it, record it and its trials; return the outcome.

    Args:
        space: the search space.
        options: the study's options (``name`` is the Experiment's name).
        store: a :class:`~alpr.metadata.MetadataStore`, or None (nothing recorded).
        api: a ``CustomObjectsApi`` (default: from the in-cluster service account or the kubeconfig).
        poll_s: seconds between polls of the Experiment.
        on_progress: called with progress lines.

    Raises:
        alpr.tuning.katib.KatibError: the Experiment could not be created, failed (``ExperimentFailed``) or did not
            finish in time (``ExperimentTimeout``); the study is recorded as failed / timeout with its trials.
    """

    experiment = katib.render_experiment(space, options)
    api = api if api is not None else katib.custom_objects_api()
    name, ns = options.name, options.namespace
    if store is not None:
        start_study(store, "katib", space, options)
    outcome = TuningOutcome(name, "katib", "failed")
    try:
        katib.create_experiment(api, experiment)
        on_progress(
            f"created Katib Experiment {ns}/{name} ({options.algorithm}, {options.max_trials} trials, "
            f"{options.parallel} at once)"
        )
        final = katib.follow_experiment(
            api, name, ns, timeout_s=options.timeout_s, poll_s=poll_s, on_progress=on_progress
        )
        best = katib.best_trial(final, space)
        outcome = TuningOutcome(
            name,
            "katib",
            "succeeded",
            best.name,
            best.metrics.get(options.objective),
            {**options.fixed, **best.parameters},
            best.metrics,
            katib.list_trials(api, final, space),
            message=katib.progress_line(final),
        )
    except katib.KatibError as exc:
        outcome.status = "timeout" if isinstance(exc, katib.ExperimentTimeout) else "failed"
        outcome.message = str(exc)
        try:  # keep what the trials did, best effort: the error above is the one to report
            current = api.get_namespaced_custom_object(katib.GROUP, katib.VERSION, ns, katib.PLURAL, name)
            outcome.trials = katib.list_trials(api, current, space)
        except Exception as inner:
            log.warning("could not read the trials of %s/%s: %s", ns, name, inner)
        if store is not None:
            record_trials(store, name, outcome.trials)
            finish_study(store, outcome)
        raise
    if store is not None:
        record_trials(store, name, outcome.trials)
        finish_study(store, outcome)
    return outcome


def tune(
    settings,
    options: TuningOptions,
    *,
    backend: str = "auto",
    space: SearchSpace | None = None,
    store=None,
    on_progress: Callable[[str], None] = print,
    **kwargs,
) -> TuningOutcome:
    """Run the study of ``options`` on Katib or locally; return its outcome.

    Args:
        settings: backends (the local twin resolves the training data with them).
        options: the study's options.
        backend: ``auto`` (Katib when a Kubernetes API is configured, else local), ``katib`` or ``local``.
        space: the search space (default :func:`alpr.tuning.space.default_space`).
        store: a :class:`~alpr.metadata.MetadataStore` (default: the one of ``settings``).
        on_progress: called with progress lines.
        kwargs: passed to :func:`run_katib` (``api``, ``poll_s``) or :func:`alpr.tuning.local.run_local`.

    Raises:
        ValueError: an unknown backend.
        TuningFailed: the local study failed, or timed out without a best trial.
        alpr.tuning.katib.KatibError: the Katib Experiment could not be created, failed or timed out.
    """

    if backend not in BACKENDS:
        raise ValueError(f"unknown tuning backend {backend!r}: one of {', '.join(BACKENDS)}")
    space = space or default_space()
    if store is None:
        store = MetadataStore(settings.db_url)
        store.create_schema()
    if backend == "katib" or (backend == "auto" and katib.cluster_available()):
        return run_katib(space, options, store=store, on_progress=on_progress, **kwargs)
    outcome = run_local(settings, space, options, store=store, on_progress=on_progress, **kwargs)
    if outcome.status == "failed" or outcome.best_trial is None:
        raise TuningFailed(
            f"tuning study {outcome.name} {outcome.status}: {outcome.message} (trials recorded in "
            f"{store.url_for_display}; logs in {settings.cache_dir}/tuning/{outcome.name})"
        )
    if outcome.status == "timeout":
        log.warning("tuning study %s timed out; using its best trial so far, %s", outcome.name, outcome.best_trial)
    return outcome
