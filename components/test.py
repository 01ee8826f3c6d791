"""Test: read the held-out test split with the selected model; HTML report + recorded results."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def test(
    dataset: Input[Dataset],
    model: Input[Model],
    run_name: str,
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Read every test image, report what the model saw, and record it.

    Args:
        dataset: the training version (test split used).
        model: Evaluate's selected model.
        run_name: the pipeline run's name (marked succeeded here).
        report: HTML report: images with boxes and read text, truth vs reading per image, the metrics.
        metrics: test-split EIR, plate precision, character accuracy, mAP, mAP@0.5.
    """
    import logging
    import shutil
    from pathlib import Path

    from alpr.settings import load_settings
    from alpr.steps import _finite, test_step

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report_dir = Path(report.path + "_files")
    out = test_step(load_settings(), data_root=Path(dataset.path), model_dir=Path(model.path), report_dir=report_dir,
                    run_name=run_name)
    # The HTML artifact is one file; its images sit in the sibling folder it links to.
    html = (report_dir / "index.html").read_text().replace('src="images/', f'src="{report_dir.name}/images/')
    Path(report.path).write_text(html)
    shutil.copyfile(report.path, report_dir / "report.html")
    report.metadata.update({"report_dir": str(report_dir), "images": out["images"],
                            "exact_images": out["exact_images"]})
    for name, value in _finite(out["metrics"]).items():
        metrics.log_metric(f"test_{name}", value)
