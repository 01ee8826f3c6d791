"""Tune: a hyperparameter search before Train (Katib on a cluster, Optuna locally) → the best hyperparameters."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def tune(
    enabled: bool,
    dataset: Input[Dataset],
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
    metrics: Output[Metrics],
) -> str:
    """Search the hyperparameters of ``alpr.tuning.space`` for the best validation EIR; return them as JSON.

    Off by default (``enabled`` is the pipeline's ``tune`` parameter): then it returns ``""`` at once and Train
    keeps the pipeline's hyperparameters. (The step is always in the graph rather than under a ``dsl.If``:
    kfp.local cannot run ``dsl.OneOf``, and a task outside a ``dsl.If`` may not consume one inside it.)

    In a pod of a cluster it creates a Katib Experiment (its trials fetch the training version by name) and waits
    for it; elsewhere it runs the local Optuna twin on the dataset folder. Either way the study and its trials are
    recorded in the metadata store. Trials train with ``epochs``, ``val_interval`` and ``seed`` as Train will.

    Args:
        enabled: run the search; False: return ``""`` (no override).
        dataset: a training version from Record.
        run_name: the pipeline run's name (the study is named after it).
        config: leaf config file in ``configs/``.
        epochs: training epochs of every trial.
        val_interval: epochs between a trial's validations (each one reports EIR, mAP and loss).
        seed: training seed of every trial.
        algorithm: ``random``, ``tpe`` or ``bayesianoptimization``.
        max_trials: trials in total.
        parallel: trials at once.
        max_failed: the study fails when more trials than this failed.
        timeout_s: give up after this many seconds (0: no limit).
        metrics: the best trial's metrics and the study's trial count.

    Returns:
        the best hyperparameters, a JSON object of ``alpr.model.training.Hyperparameters`` fields (Train's
        ``hp_override``), or ``""`` when not enabled.
    """
    if not enabled:
        return ""
    from pathlib import Path

    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.runs import finite_metrics
    from alpr.steps.tune import tune_step

    logs.setup()
    study = tune_step(
        load_settings(),
        dataset_dir=Path(dataset.path),
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
    for name, value in finite_metrics(study.best_metrics).items():
        metrics.log_metric(f"best_{name}", value)
    metrics.log_metric("trials", study.trials)
    metrics.metadata.update({"study": study.study, "backend": study.backend, "best_trial": study.best_trial})
    return study.hp_override
