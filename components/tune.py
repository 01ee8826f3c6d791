"""Tune: a hyperparameter search before Train (Katib on a cluster, Optuna locally) → the best hyperparameters."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def tune(
    dataset: Input[Dataset],
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

    Off by default: the pipeline runs it only when its ``tune`` parameter is on (on a cluster under a ``dsl.If``,
    so that a run without tuning shows it skipped; locally it is left out of the graph, see
    :func:`pipelines.alpr_train.local_pipeline`). The study is named after the task's run (``ALPR_RUN_NAME``).

    In a pod of a cluster it creates a Katib Experiment (its trials fetch the training version by name) and waits
    for it; elsewhere it runs the local Optuna twin on the dataset folder. Either way the study and its trials are
    recorded in the metadata store. Trials train with ``epochs``, ``val_interval`` and ``seed`` as Train will.

    Args:
        dataset: a training version from Record.
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
        ``hp_override``).
    """
    from pathlib import Path

    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.runs import current_run_name, finite_metrics
    from alpr.steps.tune import tune_step

    logs.setup()
    study = tune_step(
        load_settings(),
        dataset_dir=Path(dataset.path),
        run_name=current_run_name(),
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
