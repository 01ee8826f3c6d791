"""The Evaluate step: every candidate on val, one selected, its reading settings chosen, published and recorded."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

from alpr import storage
from alpr.model.breakdown import Breakdown, breakdown_from_coco, format_breakdown
from alpr.model.evaluation import ZOOM_CHOICES, evaluate_checkpoint, select_best, served_metrics, tune_reading
from alpr.model.inference import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METADATA_FILE,
    Detections,
    PlateReader,
    export_onnx,
    model_thresholds,
    write_model_dir,
)
from alpr.model.reading import read_arrays
from alpr.settings import Settings
from alpr.steps.lineage import CandidatesLineage, ModelLineage, read_lineage
from alpr.steps.runs import marks_run_failed, open_store

log = logging.getLogger(__name__)

#: The model.json key holding the selected model's val breakdown (:meth:`alpr.model.breakdown.Breakdown.to_json`).
BREAKDOWN_KEY = "breakdown"


@marks_run_failed
def evaluate_step(
    settings: Settings,
    *,
    data_root: Path,
    candidates_dir: Path,
    out_dir: Path,
    run_name: str,
    selection_metric: str = "eir",
) -> ModelLineage:
    """Evaluate every candidate checkpoint on the val split, select one, publish and record it.

    The candidates are the reader's checkpoints, evaluated on val by mmengine's test loop (COCO mAP; the reading
    metrics of one detector). A two-stage Train output (:attr:`CandidatesLineage.plate_detector
    <alpr.steps.lineage.CandidatesLineage.plate_detector>`) puts its plate detector into every candidate's model
    directory instead, and each candidate is read once as it serves, both stages
    (:func:`alpr.model.evaluation.served_metrics`: COCO mAP of its detections and its reading metrics), so the
    selection, the reading settings and the breakdown below are those of the model that serves; the selected
    candidate's detections are reused for them.
    Every candidate becomes a ``models`` row with its evaluation; the selected one gets its reading thresholds
    chosen on the val split (:func:`alpr.model.evaluation.tune_reading`; its val reading metrics are those at the
    chosen thresholds), is marked selected and published as a model directory (:mod:`alpr.model.inference`) to
    ``<storage>/runs/<run_name>/model``, which is also copied into ``out_dir``. A failure marks the run failed.
    Before it is published, the selected model is exported to ONNX for the model server's ONNX Runtime back end
    (:func:`alpr.model.inference.export_onnx`: ``model.onnx``, recorded in ``model.json``; the reader's SHA-256 also
    in the store's ``models.onnx_sha256``).

    The selected model then reads val once more at those settings for the breakdown of its metrics by plate width,
    angle, layout and brightness (:mod:`alpr.model.breakdown`): stored in its ``model.json`` under
    :data:`BREAKDOWN_KEY`, logged as tables, and summarised in its metrics as ``recall`` (found plates / plates) and
    ``recall_width_<bucket>`` (:meth:`~alpr.model.breakdown.Breakdown.scalars`: ``lt5``, ``5_10``, ``10_20``,
    ``ge20``; NaN for a bucket val has no plate in).

    Args:
        data_root: Record's folder (its val split is used).
        candidates_dir: Train's folder (a :class:`~alpr.steps.lineage.CandidatesLineage`).
        out_dir: receives the model directory (``config.py``, ``model.pth``, ``model.json``) and ``lineage.json``.
        run_name: the pipeline run.
        selection_metric: one of :data:`alpr.model.metrics.METRIC_KEYS`.

    Returns:
        the lineage written to ``out_dir``: the selected model's val metrics, every candidate's, its storage URI,
        its model id, its checkpoint, and Train's lineage.

    Raises:
        FileNotFoundError, alpr.steps.lineage.LineageError: ``candidates_dir`` is not Train's output.
        ValueError: an unknown ``selection_metric``, or no candidates.
    """
    candidates_dir = Path(candidates_dir)
    trained = read_lineage(candidates_dir, CandidatesLineage)
    config_path = candidates_dir / "config.py"
    plate = candidates_dir / trained.plate_detector if trained.plate_detector else None
    plate_files = None if plate is None else (plate / CONFIG_FILE, plate / CHECKPOINT_FILE)
    detections: dict[str, list[Detections]] = {}
    if plate_files is None:
        results = {
            name: evaluate_checkpoint(config_path, candidates_dir / name, data_root, "val")
            for name in trained.candidates
        }
    else:
        # Two stages: rank the reader's checkpoints by how the model reads with them (plate detector + crops).
        results = {}
        for name in trained.candidates:
            with tempfile.TemporaryDirectory(prefix="alpr-candidate-") as tmp:
                model_dir = write_model_dir(Path(tmp) / "model", config_path, candidates_dir / name, {}, plate_files)
                results[name], detections[name] = served_metrics(model_dir, data_root, "val")
    best = select_best(results, selection_metric)
    store = open_store(settings)
    model_uri = storage.open_storage(settings.storage_uri).join("runs", run_name, "model")
    out_dir = Path(out_dir)
    meta = {
        "lineage": {k: v for k, v in trained.to_dict().items() if k != "candidates"},
        "checkpoint": best,
        "val_metrics": results[best],
        "selection_metric": selection_metric,
    }
    write_model_dir(out_dir, config_path, candidates_dir / best, meta, plate_detector=plate_files)
    by_zoom = _val_detections(out_dir, data_root, {0: detections[best]} if best in detections else None)
    settings, tuned = tune_reading(out_dir, data_root, "val", detections=by_zoom)
    breakdown = val_breakdown(out_dir, data_root, "val", detections=by_zoom.get(settings.get("zoom_below_px", 0)))
    if breakdown is not None:
        tuned = {**tuned, "recall": breakdown.overall["recall"], **breakdown.scalars(("recall",), "width")}
    results[best] = {**results[best], **tuned}
    exported = export_onnx(out_dir)
    with store.transaction() as tx:
        ids = {}
        for name, metrics in results.items():
            ids[name] = tx.add_model(
                uri=model_uri if name == best else f"{trained.train_uri}/{name}",
                training_version=trained.training_version,
                run=run_name,
                config_uri=f"{trained.train_uri}/config.py",
                config_hash=trained.config_hash,
                checkpoint=name,
                epoch=_epoch_of(name),
                hyperparameters=trained.hyperparameters,
            )
            tx.add_evaluation(ids[name], "val", metrics, run=run_name)
        tx.select_model(ids[best], selection_metric, results[best].get(selection_metric))
        tx.set_model_export(ids[best], exported["reader"]["sha256"])
        storage.publish(out_dir, model_uri)
    lineage = ModelLineage(
        **trained.training_fields(),
        candidates=results,
        metrics=results[best],
        model_uri=model_uri,
        model_id=ids[best],
        checkpoint=best,
        selection_metric=selection_metric,
    )
    lineage.write(out_dir)
    return lineage


def _val_detections(model_dir: Path, data_root: Path, known: dict[int, list[Detections]] | None):
    """The selected model's val detections per zoom choice (``{zoom_below_px: per-image detections}``): ``known``
    when given (a two-stage model's, from ranking the candidates), else detected once for every
    :data:`~alpr.model.evaluation.ZOOM_CHOICES` value; empty when val has no images."""
    if known is not None:
        return known
    images = json.loads((Path(data_root) / "annotations" / "val.json").read_text(encoding="utf-8"))["images"]
    if not images:
        return {}
    reader = PlateReader(model_dir)
    choices = (0,) if reader.two_stage else ZOOM_CHOICES
    return reader.detect_files_zoom_choices([Path(data_root) / img["file_name"] for img in images], choices)


def val_breakdown(
    model_dir: Path, data_root: Path, split: str = "val", *, detections: list[Detections] | None = None
) -> Breakdown | None:
    """Read ``split`` with the model directory's reader (its chosen settings) and store the breakdown of the
    readings in its ``model.json`` under :data:`BREAKDOWN_KEY`; log it.

    Args:
        model_dir: a model directory whose ``model.json`` is updated.
        data_root: a COCO training version folder (``annotations/<split>.json``, ``images/``).
        split: the split read.
        detections: the model's per-image detections on ``split`` at its chosen zoom setting, when already
            computed (they are read with its chosen thresholds); None: read the split here.

    Returns:
        the breakdown, or None when the split has no images (``model.json`` is then left as it is).

    Raises:
        FileNotFoundError: the split's annotation file is missing. ValueError: an image cannot be read.
    """
    model_dir, data_root = Path(model_dir), Path(data_root)
    ann = data_root / "annotations" / f"{split}.json"
    images = json.loads(ann.read_text(encoding="utf-8"))["images"]
    if not images:
        return None
    meta_path = model_dir / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    if detections is None:
        readings = PlateReader(model_dir).read_files([data_root / img["file_name"] for img in images])
    else:  # no model to load: the detections are read with the thresholds its model.json holds
        readings = [read_arrays(*dets, **model_thresholds(meta)) for dets in detections]
    breakdown = breakdown_from_coco(ann, data_root, readings)
    meta[BREAKDOWN_KEY] = {"split": split, **breakdown.to_json()}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    log.info("%s breakdown of %s:\n%s", split, model_dir, format_breakdown(breakdown))
    return breakdown


def _epoch_of(checkpoint: str) -> int | None:
    """The epoch in a checkpoint's file name (``epoch_12.pth`` → 12), or None (``best_*.pth`` without one)."""
    m = re.search(r"epoch_(\d+)", checkpoint)
    return int(m.group(1)) if m else None
