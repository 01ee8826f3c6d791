"""Evaluating checkpoints on a COCO split with mmengine's test loop.

Metrics per checkpoint: COCO bbox mAP / mAP@0.5 over the 17 classes (pycocotools through mmdetection's
``CocoMetric``) and EIR, plate precision, character accuracy (PLATE_SPEC.md, through
:class:`alpr.mmdet_plugins.PlateReadingMetric`). :func:`select_best` picks a checkpoint by one of them.
"""

from __future__ import annotations

import logging
import math
import tempfile
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

#: Short metric names accepted by :func:`select_best`, mapped to the evaluator's keys.
METRIC_KEYS = {
    "eir": "plate/eir",
    "plate_precision": "plate/plate_precision",
    "char_accuracy": "plate/char_accuracy",
    "mAP": "coco/bbox_mAP",
    "mAP_50": "coco/bbox_mAP_50",
}


#: COCO keys mmdetection's CocoMetric omits when the detector output nothing at all for the split.
COCO_KEYS = ("coco/bbox_mAP", "coco/bbox_mAP_50")


def complete_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Evaluator metrics (``coco/…``, ``plate/…``) with the COCO mAP keys set to 0.0 when CocoMetric returned
    nothing because there were no detections (AP of an empty detection set is 0); other keys dropped."""
    out = {k: float(v) for k, v in raw.items() if k.startswith(("coco/", "plate/"))}
    if any(k.startswith("plate/") for k in out):
        for key in COCO_KEYS:
            out.setdefault(key, 0.0)
    return out


def short_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Rename evaluator keys (``plate/eir``…) to the short names of :data:`METRIC_KEYS`; others dropped."""
    raw = complete_metrics(raw)
    return {short: float(raw[key]) for short, key in METRIC_KEYS.items() if key in raw}


def evaluate_checkpoint(config_path: Path, checkpoint: Path, data_root: Path, split: str = "val",
                        *, num_workers: int = 0) -> dict[str, float]:
    """Run mmengine's test loop of ``checkpoint`` on ``data_root/annotations/<split>.json``.

    Returns:
        short metric names → values (mAP values in [0, 1]; NaN where undefined, e.g. no plates in the split).

    Raises:
        FileNotFoundError: the config, checkpoint or split file is missing.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    import alpr.mmdet_plugins  # noqa: F401
    from alpr.training import trusted_checkpoint_loading

    ann = Path(data_root).absolute() / "annotations" / f"{split}.json"
    for p in (Path(config_path), Path(checkpoint), ann):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
    cfg = Config.fromfile(str(config_path))
    loader = cfg.test_dataloader
    loader.dataset.data_root = str(Path(data_root).absolute()) + "/"
    loader.dataset.ann_file = f"annotations/{split}.json"
    loader.num_workers = num_workers
    loader.persistent_workers = num_workers > 0
    for metric in cfg.test_evaluator:
        metric["ann_file"] = str(ann)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
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


def sweep_reading_thresholds(detections, truths, grid: dict[str, tuple[float, ...]] | None = None,
                             ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Choose the plate and character score thresholds of the reader on a validation split.

    Args:
        detections: per image ``(bboxes (N, 4), labels (N,), scores (N,))`` as :meth:`alpr.inference.PlateReader.
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

    from alpr.metrics import PlateMetrics
    from alpr.reading import read_arrays

    grid = grid or THRESHOLD_GRID
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detections for {len(truths)} images")
    if not truths:
        raise ValueError("no images to choose reading thresholds on")
    table = []
    for plate_thr, char_thr in itertools.product(grid["plate_score_thr"], grid["char_score_thr"]):
        acc = PlateMetrics()
        for (b, l, s), truth in zip(detections, truths):
            acc.add(truth, read_arrays(b, l, s, plate_score_thr=plate_thr, char_score_thr=char_thr))
        res = acc.result()
        table.append({"plate_score_thr": plate_thr, "char_score_thr": char_thr,
                      **{k: float(res[k]) for k in ("eir", "plate_precision", "char_accuracy")}})

    def key(row: dict) -> tuple:
        vals = [row[k] if not math.isnan(row[k]) else -math.inf for k in ("eir", "plate_precision", "char_accuracy")]
        return (*vals, -abs(row["plate_score_thr"] - 0.3) - abs(row["char_score_thr"] - 0.3))

    best = max(table, key=key)
    return {"plate_score_thr": best["plate_score_thr"], "char_score_thr": best["char_score_thr"]}, table
