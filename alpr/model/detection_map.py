"""COCO bbox mAP of a model's detections as it serves them (both stages of a two-stage model, or the zoom pass).

mmengine's test loop (:func:`alpr.model.evaluation.evaluate_checkpoint`) measures one detector over whole frames.
A two-stage model's detections are the plate detector's plates plus the characters the reader found in each plate's
crop (:meth:`alpr.model.inference.PlateReader.detect`); :func:`detection_map` scores those with the same
pycocotools evaluation mmdetection's ``CocoMetric`` runs (PLATE_SPEC.md "Metrics": COCO bbox mAP and mAP@0.5 over
the 17 classes).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alpr import spec


def detection_map(ann_file: Path, detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """COCO bbox mAP and mAP@0.5 of per-image detections against a COCO split (pycocotools ``COCOeval``).

    Args:
        ann_file: the split's COCO JSON (:mod:`alpr.data.coco`), whose categories are named by
            :data:`alpr.spec.CLASSES`.
        detections: one ``(bboxes (N, 4) x1 y1 x2 y2 pixels, labels (N,) class indices of spec.CLASSES, scores (N,))``
            per image of ``ann_file``, in the order of its ``images``.

    Returns:
        ``{"mAP": AP@[.5:.95], "mAP_50": AP@.5}``, fractions in [0, 1]; NaN when the split has no ground-truth box;
        0.0 when there are boxes but no detection.

    Raises:
        ValueError: ``detections`` and the split's images differ in number; a label outside ``spec.CLASSES``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann_file = Path(ann_file)
    images = json.loads(ann_file.read_text(encoding="utf-8"))["images"]
    if len(images) != len(detections):
        raise ValueError(f"{len(detections)} detections for the {len(images)} images of {ann_file}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO(str(ann_file))
    if not coco.getAnnIds():
        return {"mAP": math.nan, "mAP_50": math.nan}
    cat_of = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    category = [cat_of.get(name) for name in spec.CLASSES]
    results = []
    for image, (boxes, labels, scores) in zip(images, detections):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        for (x1, y1, x2, y2), label, score in zip(boxes, np.asarray(labels, dtype=int), np.asarray(scores)):
            if not 0 <= label < len(spec.CLASSES):
                raise ValueError(f"label {label} of image {image['file_name']} is not a class of spec.CLASSES")
            if category[label] is None:
                continue
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": category[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    if not results:
        return {"mAP": 0.0, "mAP_50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [float(v) if v >= 0 else math.nan for v in evaluation.stats[:2]]
    return {"mAP": stats[0], "mAP_50": stats[1]}
