"""The Tune step: a hyperparameter search on the training version (Katib on a cluster, Optuna locally)."""

from __future__ import annotations

from pathlib import Path

from alpr.settings import Settings
from alpr.steps.lineage import DatasetLineage, TuneResult, read_lineage
from alpr.tuning import katib
from alpr.tuning.options import TuningOptions, study_name_for
from alpr.tuning.run import tune


def tuning_options(
    *,
    data: str,
    run_name: str,
    config: str,
    epochs: int,
    val_interval: int,
    seed: int,
    algorithm: str,
    max_trials: int,
    parallel: int,
    max_failed: int,
    timeout_s: int,
) -> TuningOptions:
    """The study's options for the Tune step of run ``run_name``.

    The study is named after the run (:func:`alpr.tuning.options.study_name_for`); every trial trains with
    ``epochs``, ``val_interval`` and ``seed`` as Train will. ``timeout_s`` 0 means no limit.

    Raises:
        ValueError: a value out of range (see :class:`~alpr.tuning.options.TuningOptions`).
    """
    return TuningOptions(
        name=study_name_for(run_name),
        data=data,
        algorithm=algorithm,
        max_trials=max_trials,
        parallel=parallel,
        max_failed=max_failed,
        config=config,
        fixed={"epochs": epochs, "val_interval": val_interval, "seed": seed},
        timeout_s=timeout_s or None,
    )


def tune_step(
    settings: Settings,
    *,
    dataset_dir: Path,
    run_name: str,
    config: str,
    epochs: int,
    val_interval: int,
    seed: int,
    algorithm: str,
    max_trials: int,
    parallel: int,
    max_failed: int,
    timeout_s: int,
) -> TuneResult:
    """Search the hyperparameters of :mod:`alpr.tuning.space` for the best validation EIR.

    In a pod of a cluster (:func:`alpr.tuning.katib.cluster_available`) it creates a Katib Experiment, whose
    trials fetch the training version by the name in ``dataset_dir``'s lineage, and waits for it; elsewhere it
    runs the local Optuna twin on the ``dataset_dir`` folder. Either way the study and its trials are recorded in
    the metadata store (:func:`alpr.tuning.run.tune`).

    Args:
        dataset_dir: Record's folder (a :class:`~alpr.steps.lineage.DatasetLineage` on a cluster).
        run_name, config, epochs, val_interval, seed, algorithm, max_trials, parallel, max_failed, timeout_s:
            see :func:`tuning_options`.

    Returns:
        the study, its best trial and parameters (:attr:`TuneResult.hp_override
        <alpr.steps.lineage.TuneResult.hp_override>` is Train's input), the best trial's metrics.

    Raises:
        alpr.tuning.run.TuningFailed, alpr.tuning.katib.KatibError: the study failed or could not run.
    """
    on_cluster = katib.cluster_available()
    data = read_lineage(dataset_dir, DatasetLineage).training_version if on_cluster else str(dataset_dir)
    options = tuning_options(
        data=data,
        run_name=run_name,
        config=config,
        epochs=epochs,
        val_interval=val_interval,
        seed=seed,
        algorithm=algorithm,
        max_trials=max_trials,
        parallel=parallel,
        max_failed=max_failed,
        timeout_s=timeout_s,
    )
    outcome = tune(settings, options, backend="katib" if on_cluster else "local")
    return TuneResult(
        study=outcome.name,
        backend=outcome.backend,
        best_trial=outcome.best_trial,
        best_params=dict(outcome.best_params),
        best_metrics={k: v for k, v in outcome.best_metrics.items() if v is not None},
        trials=len(outcome.trials),
    )
