"""Evaluating checkpoints on a COCO split with mmengine's test loop.

Metrics per checkpoint: COCO bbox mAP / mAP@0.5 over the 17 classes (pycocotools through mmdetection's
``CocoMetric``) and EIR, plate precision, character accuracy (PLATE_SPEC.md, through
:class:`alpr.model.plugins.PlateReadingMetric`). :func:`select_best` picks a checkpoint by one of them;
:func:`sweep_reading_thresholds` and :func:`tune_reading` choose the selected model's reading settings on val.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import uuid
from pathlib import Path

from alpr.model.checkpoints import load_saved_config, trusted_checkpoint_loading
from alpr.model.detection_map import detection_map
from alpr.model.inference import DEFAULT_BACKEND, METADATA_FILE, Detections, PlateReader
from alpr.model.metrics import METRIC_KEYS, PlateMetrics, plate_metrics, short_metrics
from alpr.model.reading import MIN_REPORTED_CHARACTERS, read_arrays

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    config_path: Path, checkpoint: Path, data_root: Path, split: str = "val", *, num_workers: int = 0
) -> dict[str, float]:
    """Run mmengine's test loop of ``checkpoint`` on ``data_root/annotations/<split>.json``.

    Returns:
        short metric names → values (mAP values in [0, 1]; NaN where undefined, e.g. no plates in the split).

    Raises:
        FileNotFoundError: the config, checkpoint or split file is missing.
    """
    from mmengine.runner import Runner

    import alpr.model.plugins  # noqa: F401  (mmdet-dependent: registers PlateReadingMetric)

    ann = Path(data_root).absolute() / "annotations" / f"{split}.json"
    for p in (Path(config_path), Path(checkpoint), ann):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
    cfg = load_saved_config(config_path)
    loader = cfg.test_dataloader
    loader.dataset.data_root = str(Path(data_root).absolute()) + "/"
    loader.dataset.ann_file = f"annotations/{split}.json"
    loader.num_workers = num_workers
    loader.persistent_workers = num_workers > 0
    for metric in cfg.test_evaluator:
        metric["ann_file"] = str(ann)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.visualizer.vis_backends = [{"type": "LocalVisBackend"}]
    # The training config draws a few val predictions into TensorBoard; in the test loop mmdet's hook would draw
    # every image, so it is off here.
    cfg.default_hooks.visualization.draw = False
    cfg.visualizer.name = f"eval-visualizer-{uuid.uuid4().hex[:12]}"  # not the training run's instance
    with tempfile.TemporaryDirectory(prefix="alpr-eval-") as tmp:
        cfg.work_dir = tmp
        runner = Runner.from_cfg(cfg)
        with trusted_checkpoint_loading():
            raw = runner.test()
    metrics = short_metrics(raw)
    log.info("%s on %s: %s", Path(checkpoint).name, split, metrics)
    return metrics


def served_metrics(
    model_dir: Path, data_root: Path, split: str = "val", *, backend: str = DEFAULT_BACKEND
) -> tuple[dict[str, float], list[Detections]]:
    """Read ``split`` with the model directory as it serves (:class:`alpr.model.inference.PlateReader`: both stages
    of a two-stage model, its reading settings) and score it: COCO mAP of its detections
    (:func:`alpr.model.detection_map.detection_map`) and the PLATE_SPEC reading metrics.

    Evaluate ranks a two-stage model's candidates with it: mmengine's test loop runs the reader alone over whole
    frames, which says little about how it reads the crops the plate detector gives it. ``backend`` is
    :class:`~alpr.model.inference.PlateReader`'s (``benchmarks/backend_accuracy.py`` compares the two).

    Returns:
        ``(metrics, detections)``: ``mAP``, ``mAP_50``, ``eir``, ``plate_precision``, ``char_accuracy`` (NaN where
        undefined), and the per-image detections before any reading threshold (for :func:`tune_reading`); an
        empty dict and list when the split has no images.

    Raises:
        FileNotFoundError: the split's annotation file is missing. ValueError: an image cannot be decoded.
    """
    data_root = Path(data_root)
    ann = data_root / "annotations" / f"{split}.json"
    images = json.loads(ann.read_text())["images"]
    if not images:
        return {}, []
    reader = PlateReader(Path(model_dir), backend=backend)
    detections = reader.detect_files([data_root / img["file_name"] for img in images])
    readings = [read_arrays(*dets, **reader.thresholds) for dets in detections]
    res = plate_metrics(zip((img.get("plates", []) for img in images), readings))
    metrics = {
        **detection_map(ann, detections),
        **{k: float(res[k]) for k in ("eir", "plate_precision", "char_accuracy")},
    }
    log.info("%s read on %s: %s", Path(model_dir).name, split, metrics)
    return metrics, detections


def select_best(results: dict[str, dict[str, float]], metric: str = "eir") -> str:
    """Return the key of ``results`` (checkpoint → metrics) with the highest ``metric``.

    Ties go to the later key in insertion order (a later checkpoint trained longer). NaN counts as lowest.

    Raises:
        ValueError: ``results`` is empty or ``metric`` is not one of :data:`METRIC_KEYS`.
    """
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown selection metric {metric!r}; choose one of {', '.join(METRIC_KEYS)}")
    if not results:
        raise ValueError("no checkpoints to select from")

    def score(item: tuple[int, tuple[str, dict]]) -> tuple[float, int]:
        i, (_, m) = item
        v = m.get(metric, float("nan"))
        return (-math.inf if v is None or math.isnan(v) else v, i)

    return max(enumerate(results.items()), key=score)[1][0]


#: Reading thresholds searched on the val split by :func:`sweep_reading_thresholds` (the reading's defaults,
#: 0.3 / 0.3, are in the grid).
THRESHOLD_GRID: dict[str, tuple[float, ...]] = {
    "plate_score_thr": (0.2, 0.3, 0.4, 0.5),
    "char_score_thr": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6),
}


def sweep_reading_thresholds(
    detections,
    truths,
    grid: dict[str, tuple[float, ...]] | None = None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Choose the plate and character score thresholds of the reader on a validation split.

    Args:
        detections: per image ``(bboxes (N, 4), labels (N,), scores (N,))`` as :meth:`alpr.model.inference.PlateReader.
            detect` returns them.
        truths: per image its ground-truth plates (``[{"box", "text"}, ...]``, as in the COCO image records).
        grid: ``{"plate_score_thr": values, "char_score_thr": values}``; default :data:`THRESHOLD_GRID`.

    Returns:
        ``(best, table)``: the thresholds with the highest EIR (ties: higher plate precision, then character
        accuracy, then closest to the defaults 0.3 / 0.3), and one row per grid point with ``eir``,
        ``plate_precision``, ``char_accuracy``.

    Raises:
        ValueError: ``detections`` and ``truths`` differ in length, or the split has no images.
    """
    import itertools

    grid = grid or THRESHOLD_GRID
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detections for {len(truths)} images")
    if not truths:
        raise ValueError("no images to choose reading thresholds on")
    table = []
    for plate_thr, char_thr in itertools.product(grid["plate_score_thr"], grid["char_score_thr"]):
        acc = PlateMetrics()
        for (bboxes, labels, scores), truth in zip(detections, truths, strict=True):
            reading = read_arrays(
                bboxes,
                labels,
                scores,
                plate_score_thr=plate_thr,
                char_score_thr=char_thr,
                min_characters=MIN_REPORTED_CHARACTERS,
            )
            acc.add(truth, reading)
        res = acc.result()
        table.append(
            {
                "plate_score_thr": plate_thr,
                "char_score_thr": char_thr,
                **{k: float(res[k]) for k in ("eir", "plate_precision", "char_accuracy")},
            }
        )

    def key(row: dict) -> tuple:
        vals = [row[k] if not math.isnan(row[k]) else -math.inf for k in ("eir", "plate_precision", "char_accuracy")]
        return (*vals, -abs(row["plate_score_thr"] - 0.3) - abs(row["char_score_thr"] - 0.3))

    best = max(table, key=key)
    return {"plate_score_thr": best["plate_score_thr"], "char_score_thr": best["char_score_thr"]}, table


#: Zoom settings Evaluate tries on val (:class:`alpr.model.inference.PlateReader` ``zoom_below_px``; 0 = one pass).
ZOOM_CHOICES = (0, 96, 160, 320)


def tune_reading(
    model_dir: Path, data_root: Path, split: str = "val", *, detections: dict[int, list[Detections]] | None = None
) -> tuple[dict, dict]:
    """Choose the model's reading settings on ``split`` and store them in its ``model.json``.

    The detector runs once over the split for all of :data:`ZOOM_CHOICES` (only 0 for a two-stage model, which reads
    every plate from its zoomed crop anyway)
    (:meth:`alpr.model.inference.PlateReader.detect_files_zoom_choices`); for each,
    :func:`sweep_reading_thresholds` sweeps :data:`THRESHOLD_GRID` on those detections; the best EIR wins (ties:
    plate precision, character accuracy, then the cheaper zoom). Writes ``thresholds``, ``zoom_below_px`` and the
    sweep tables (``threshold_sweep``) into ``model.json`` and updates its ``val_metrics``.

    Args:
        model_dir: a model directory (:func:`alpr.model.inference.write_model_dir`); its ``model.json`` is updated.
        data_root: a COCO training version folder (``annotations/<split>.json``, ``images/``).
        split: the split to choose on.
        detections: ``{zoom_below_px: per-image detections}`` of this model on ``split`` for every zoom choice
            (:meth:`~alpr.model.inference.PlateReader.detect_files_zoom_choices`; for a two-stage model, ``{0: the
            detections}`` of :func:`served_metrics`), when already computed; None: detect here.

    Returns:
        ``(settings {"plate_score_thr", "char_score_thr", "zoom_below_px"}, reading metrics at those settings:
        eir, plate_precision, char_accuracy)``; two empty dicts when the split has no images.

    Raises:
        ValueError: ``detections`` not one per image of the split.
    """
    model_dir, data_root = Path(model_dir), Path(data_root)
    images = json.loads((data_root / "annotations" / f"{split}.json").read_text())["images"]
    if not images:
        return {}, {}
    truths = [img.get("plates", []) for img in images]
    tables, best = {}, None
    if detections is None:
        reader = PlateReader(model_dir)
        # Two stages read every plate from its zoomed crop: the zoom setting has no choice to make there.
        choices = (0,) if reader.two_stage else ZOOM_CHOICES
        paths = [data_root / img["file_name"] for img in images]
        by_zoom = reader.detect_files_zoom_choices(paths, choices)  # one first pass for all choices
    else:
        by_zoom = {int(z): list(d) for z, d in detections.items()}
        choices = tuple(by_zoom)
        if any(len(d) != len(images) for d in by_zoom.values()):
            raise ValueError(f"tune_reading: detections are not one per image of {split} ({len(images)} images)")
    for zoom in choices:
        thresholds, table = sweep_reading_thresholds(by_zoom[zoom], truths)
        row = next(
            r
            for r in table
            if r["plate_score_thr"] == thresholds["plate_score_thr"]
            and r["char_score_thr"] == thresholds["char_score_thr"]
        )
        tables[str(zoom)] = table
        key = tuple(-math.inf if math.isnan(row[k]) else row[k] for k in ("eir", "plate_precision", "char_accuracy"))
        log.info("zoom_below_px=%d on %s: %s → %s", zoom, split, thresholds, row)
        if best is None or key > best[0]:
            best = (key, {**thresholds, "zoom_below_px": zoom}, row)
    _, settings, row = best
    tuned = {k: row[k] for k in ("eir", "plate_precision", "char_accuracy")}
    meta_path = model_dir / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["thresholds"] = {k: settings[k] for k in ("plate_score_thr", "char_score_thr")}
    meta["zoom_below_px"] = settings["zoom_below_px"]
    meta["threshold_sweep"] = {"split": split, "by_zoom_below_px": tables}
    meta["val_metrics"] = {**meta.get("val_metrics", {}), **tuned}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    log.info("reading settings chosen on %s: %s → %s", split, settings, tuned)
    return settings, tuned
