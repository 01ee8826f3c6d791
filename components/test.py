"""Test: read the held-out test split with the selected model; HTML report + recorded results."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def test(
    dataset: Input[Dataset],
    model: Input[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
):
    """Read every test image, report what the model saw, and record it.

    The run recorded is the task's ``ALPR_RUN_NAME`` (not an input, so that KFP's cache can hit); its final
    status is set by the pipeline's exit handler (``components.finish``), after Deploy.

    Args:
        dataset: the training version (test split used).
        model: Evaluate's selected model.
        report: HTML report (self-contained, each picture inlined once): the metrics, per-layout/size/angle/
            brightness tables, the character confusion matrix, and per image its thumbnail with boxes and, per plate,
            its crop beside its truth and reading with the differing characters marked.
        metrics: test-split EIR, plate precision, character accuracy, mAP, mAP@0.5.
        confusion_matrix: the character confusion matrix (rows truth, columns read; classes 0-9, A-E and the
            missing symbol), drawn by the KFP UI.
    """
    from pathlib import Path

    from alpr import logs
    from alpr.model.report import CONFUSION_FILE, ConfusionMatrix, self_contained_html
    from alpr.settings import load_settings
    from alpr.steps.runs import current_run, finite_metrics
    from alpr.steps.test import test_step

    logs.setup()
    settings = load_settings()
    report_dir = Path(report.path + "_files")
    out = test_step(
        settings,
        data_root=Path(dataset.path),
        model_dir=Path(model.path),
        report_dir=report_dir,
        run_name=current_run(settings),
    )
    # The KFP UI renders the HTML artifact as one file: inline the thumbnails. The folder (index.html +
    # images/) stays beside it for people opening the report from the pipeline root.
    Path(report.path).write_text(self_contained_html(report_dir), encoding="utf-8")
    report.metadata.update(
        {
            "report_dir": str(report_dir),
            "report_uri": out.report_uri,
            "images": out.images,
            "exact_images": out.exact_images,
        }
    )
    for name, value in finite_metrics(out.metrics).items():
        metrics.log_metric(f"test_{name}", value)
    matrix = ConfusionMatrix.read(report_dir / CONFUSION_FILE)
    confusion_matrix.log_confusion_matrix(list(matrix.classes), [list(row) for row in matrix.counts])
