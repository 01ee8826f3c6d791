"""Evaluate: COCO mAP + plate-reading metrics on val; select and record the model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    candidates: Input[Model],
    selection_metric: str,
    selected_model: Output[Model],
    metrics: Output[Metrics],
):
    """Evaluate every candidate checkpoint on the val split and select one.

    Metrics: COCO bbox mAP and mAP@0.5 (pycocotools through mmdetection's CocoMetric), EIR, plate precision and
    character accuracy (PLATE_SPEC.md), recall, and recall per plate-width bucket (``val_recall_width_lt5``,
    ``_5_10``, ``_10_20``, ``_ge20``: plates < 5 %, 5-10 %, 10-20 %, >= 20 % of the image width). The selected
    checkpoint is published to storage as a model directory, recorded in the metadata store with every candidate's
    evaluation, and output as ``selected_model``; its ``model.json`` holds the full val breakdown by plate width,
    angle, layout and brightness (key ``breakdown``, :mod:`alpr.model.breakdown`), which the step also logs. The
    run recorded is the task's ``ALPR_RUN_NAME`` (not an input, so that KFP's cache can hit).

    Args:
        dataset: the training version (val split used).
        candidates: Train's output.
        selection_metric: one of eir, plate_precision, char_accuracy, mAP, mAP_50.
        selected_model: output model directory (config.py, model.pth, model.json); metadata has its storage URI.
        metrics: the selected checkpoint's val metrics (finite values only: a width bucket val has no plates in
            is left out).
    """
    from pathlib import Path

    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.evaluate import evaluate_step
    from alpr.steps.runs import current_run, finite_metrics

    logs.setup()
    settings = load_settings()
    selected = evaluate_step(
        settings,
        data_root=Path(dataset.path),
        candidates_dir=Path(candidates.path),
        out_dir=Path(selected_model.path),
        run_name=current_run(settings),
        selection_metric=selection_metric,
    )
    selected_model.metadata.update(
        {
            "model_uri": selected.model_uri,
            "model_id": selected.model_id,
            "checkpoint": selected.checkpoint,
            "selection_metric": selected.selection_metric,
            "training_version": selected.training_version,
            "annotation_version": selected.annotation_version,
            "git_rev": selected.git_rev,
            "config_hash": selected.config_hash,
        }
    )
    for name, value in finite_metrics(selected.metrics).items():
        metrics.log_metric(f"val_{name}", value)
