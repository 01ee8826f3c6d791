"""The KFP v2 pipeline ``alpr-train``: annotation version → trained, evaluated, selected, tested, deployed reader.

Record → (Tune) → Train → Evaluate → Test → Deploy, each a component of :mod:`components`. Every parameter and its
default comes from :data:`DEFAULTS` (built from :mod:`alpr.defaults`, the Deploy step's and the Tune step's
defaults), which also feeds the command-line flags of :mod:`pipelines.run`.
"""

# No `from __future__ import annotations` here: KFP reads the pipeline's parameter types from real annotations.

from pathlib import Path
from typing import Final

from kfp import compiler, dsl

from alpr.defaults import DEPLOY_DEFAULTS, TRAINING_DEFAULTS, TUNING_DEFAULTS
from alpr.kubeflow.platform import apply_platform
from components.deploy import deploy
from components.evaluate import evaluate
from components.record import record
from components.test import test
from components.train import train
from components.tune import tune as tune_step

#: The pipeline's name in Kubeflow Pipelines.
PIPELINE_NAME: Final = "alpr-train"

#: Pipeline parameters and their defaults (the embedded defaults; each is also a command-line flag).
DEFAULTS: Final[dict[str, object]] = {
    **TRAINING_DEFAULTS,  # Record, Train, Evaluate
    **DEPLOY_DEFAULTS,  # Deploy: deploy_target, min_eir_improvement
    **TUNING_DEFAULTS,  # Tune (off by default): tune, tune_algorithm, tune_max_trials, tune_parallel, …
}


@dsl.pipeline(name=PIPELINE_NAME, description="ALPR: Record → Train (mmdetection) → Evaluate → Test → Deploy")
def alpr_pipeline(
    annotation_version: str = DEFAULTS["annotation_version"],
    train_fraction: float = DEFAULTS["train_fraction"],
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    split_seed: int = DEFAULTS["split_seed"],
    config: str = DEFAULTS["config"],
    lr: float = DEFAULTS["lr"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    input_size: int = DEFAULTS["input_size"],
    weight_decay: float = DEFAULTS["weight_decay"],
    val_interval: int = DEFAULTS["val_interval"],
    seed: int = DEFAULTS["seed"],
    plate_input_size: int = DEFAULTS["plate_input_size"],
    plate_epochs: int = DEFAULTS["plate_epochs"],
    selection_metric: str = DEFAULTS["selection_metric"],
    deploy_target: str = DEFAULTS["deploy_target"],
    min_eir_improvement: float = DEFAULTS["min_eir_improvement"],
    tune: bool = DEFAULTS["tune"],
    tune_algorithm: str = DEFAULTS["tune_algorithm"],
    tune_max_trials: int = DEFAULTS["tune_max_trials"],
    tune_parallel: int = DEFAULTS["tune_parallel"],
    tune_max_failed: int = DEFAULTS["tune_max_failed"],
    tune_timeout: int = DEFAULTS["tune_timeout"],
):
    """Annotation version → training version → trained, evaluated, selected and tested plate reader."""
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    rec = record(
        annotation_version=annotation_version,
        train_fraction=train_fraction,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        run_name=run_name,
    ).set_display_name("Record")
    # Tune: a Katib Experiment (cluster) or the Optuna twin (local) when `tune` is on; its best parameters
    # (a JSON object, "" when off) override Train's.
    tu = tune_step(
        enabled=tune,
        dataset=rec.outputs["dataset"],
        run_name=run_name,
        config=config,
        epochs=epochs,
        val_interval=val_interval,
        seed=seed,
        algorithm=tune_algorithm,
        max_trials=tune_max_trials,
        parallel=tune_parallel,
        max_failed=tune_max_failed,
        timeout_s=tune_timeout,
    ).set_display_name("Tune")
    tr = train(
        dataset=rec.outputs["dataset"],
        run_name=run_name,
        config=config,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        input_size=input_size,
        weight_decay=weight_decay,
        val_interval=val_interval,
        seed=seed,
        plate_input_size=plate_input_size,
        plate_epochs=plate_epochs,
        hp_override=tu.outputs["Output"],
    ).set_display_name("Train")
    ev = evaluate(
        dataset=rec.outputs["dataset"],
        candidates=tr.outputs["model"],
        run_name=run_name,
        selection_metric=selection_metric,
    ).set_display_name("Evaluate")
    te = test(dataset=rec.outputs["dataset"], model=ev.outputs["selected_model"], run_name=run_name).set_display_name(
        "Test"
    )
    dep = (
        deploy(
            model=ev.outputs["selected_model"],
            run_name=run_name,
            deploy_target=deploy_target,
            min_eir_improvement=min_eir_improvement,
        )
        .set_display_name("Deploy")
        .after(te)
    )
    # Kubernetes needs of each task (secrets, PVC, resources, GPU, retries, caching); kfp.local ignores them.
    apply_platform(rec, "record")
    apply_platform(tu, "tune")
    apply_platform(tr, "train")
    apply_platform(ev, "evaluate")
    apply_platform(te, "test")
    apply_platform(dep, "deploy")


def compile_pipeline(output: Path) -> Path:
    """Compile :func:`alpr_pipeline` to KFP IR YAML at ``output`` (parent folders created); return ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=alpr_pipeline, package_path=str(output))
    return output
