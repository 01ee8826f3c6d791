"""The Test step: the selected model reads the held-out split; HTML report and recorded results."""

from __future__ import annotations

import json
from pathlib import Path

from alpr import storage
from alpr.model.breakdown import breakdown_from_coco
from alpr.model.detection_map import detection_map
from alpr.model.inference import PlateReader
from alpr.model.metrics import PlateMetrics
from alpr.model.reading import plate_texts, read_arrays
from alpr.model.report import ReportEntry, write_report
from alpr.monitoring.baseline import baseline_from_plates
from alpr.settings import Settings
from alpr.steps.lineage import ModelLineage, TestResult, read_lineage
from alpr.steps.runs import finite_metrics, marks_run_failed, open_store

#: The lineage fields shown in the report.
REPORT_LINEAGE = ("annotation_version", "training_version", "git_rev", "model_uri", "checkpoint", "config_hash")


@marks_run_failed
def test_step(
    settings: Settings, *, data_root: Path, model_dir: Path, report_dir: Path, run_name: str, split: str = "test"
) -> TestResult:
    """Read the ``split`` images with the selected model, write the HTML report (also published to
    ``<storage>/runs/<run_name>/report``) and record the results. The run's final status is not set here (Deploy
    follows): :func:`alpr.steps.runs.finish_run_step` sets it when the pipeline ends.

    The metrics are Evaluate's (:func:`alpr.steps.evaluate.evaluate_step`) on this split: PLATE_SPEC's, the COCO mAP
    of the detections as the model serves them (:func:`alpr.model.detection_map.detection_map`: both stages, or the
    zoom pass, at the model's reading settings), and
    from the breakdown by plate width, angle, layout and brightness (:func:`alpr.model.breakdown.breakdown_from_coco`,
    shown in the report and written beside it as :data:`alpr.model.report.BREAKDOWN_FILE`) ``recall`` and
    ``recall_width_<bucket>`` (``lt5``, ``5_10``, ``10_20``, ``ge20``; NaN for a bucket without plates). The
    report's folder also holds the character confusion matrix (:data:`alpr.model.report.CONFUSION_FILE`).

    The readings' valid-plate share and plate-score histogram are recorded as the model's baseline
    (:func:`alpr.monitoring.baseline.baseline_from_plates`, ``model_baselines``): the monitor's drift gauges compare
    the live readings of the served model with it.

    Args:
        data_root: Record's folder.
        model_dir: Evaluate's folder (a :class:`~alpr.steps.lineage.ModelLineage`).
        report_dir: receives the report (``index.html``, ``images/``).
        run_name: the pipeline run (its row must exist; a failure marks it failed).
        split: the split read.

    Returns:
        the metrics (EIR, plate precision, character accuracy, mAP, mAP@0.5, recall, recall per plate-width
        bucket), image counts, the report's path and storage URI.

    Raises:
        FileNotFoundError, alpr.steps.lineage.LineageError: ``model_dir`` is not Evaluate's output.
    """
    model_dir, data_root = Path(model_dir), Path(data_root)
    lineage = read_lineage(model_dir, ModelLineage)
    annotations = data_root / "annotations" / f"{split}.json"
    images = json.loads(annotations.read_text())["images"]
    reader = PlateReader(model_dir)
    paths = [data_root / img["file_name"] for img in images]
    detections = reader.detect_files(paths) if paths else []
    readings = [read_arrays(*dets, **reader.thresholds) for dets in detections]
    acc = PlateMetrics()
    entries, rows = [], []
    for img, path, reading in zip(images, paths, readings, strict=True):
        truth = img.get("plates", [])
        acc.add(truth, reading)
        truth_texts = sorted(p["text"] for p in truth)
        exact = truth_texts == sorted(plate_texts(reading))
        entries.append(ReportEntry(image_path=path, truth=truth, reading=reading))
        rows.append(
            {"file_name": Path(img["file_name"]).name, "truth": truth_texts, "reading": reading, "exact": exact}
        )
    reading_metrics = acc.result()
    detection = detection_map(annotations, detections) if images else {}
    breakdown = breakdown_from_coco(annotations, data_root, readings) if images else None
    metrics = {
        **{k: detection[k] for k in ("mAP", "mAP_50") if k in detection},
        **{k: float(reading_metrics[k]) for k in ("eir", "plate_precision", "char_accuracy")},
    }
    if breakdown is not None:  # the figures Evaluate adds to its val metrics, on this split
        metrics = {**metrics, "recall": breakdown.overall["recall"], **breakdown.scalars(("recall",), "width")}
    shown = lineage.to_dict()
    report = write_report(
        Path(report_dir),
        entries,
        finite_metrics(metrics),
        title=f"ALPR test report — {run_name}",
        lineage={k: shown[k] for k in REPORT_LINEAGE},
        breakdown=breakdown,
    )
    report_root = storage.open_storage(settings.storage_uri).join("runs", run_name, "report")
    report_uri = storage.publish(Path(report_dir), report_root)
    baseline = baseline_from_plates(lineage.model_id, split, readings)
    store = open_store(settings)
    with store.transaction() as tx:
        tx.add_evaluation(lineage.model_id, split, metrics, run=run_name)
        tx.add_test_results(lineage.model_id, rows, run=run_name)
        tx.add_model_baseline(
            lineage.model_id,
            split,
            images=baseline.images,
            plates=baseline.plates,
            valid_plates=baseline.valid_plates,
            score_edges=baseline.score_edges,
            score_counts=baseline.score_counts,
            run=run_name,
        )
    return TestResult(
        metrics=metrics,
        images=len(images),
        exact_images=sum(r["exact"] for r in rows),
        report=Path(report),
        report_uri=report_uri,
        model_uri=lineage.model_uri,
    )


test_step.__test__ = False  # type: ignore[attr-defined]  # a pipeline step, not a pytest test
