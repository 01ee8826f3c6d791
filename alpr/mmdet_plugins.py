"""mmdetection plug-ins, registered when a config lists ``custom_imports=dict(imports=["alpr.mmdet_plugins"])``.

- ``PlateReadingMetric``: EIR, plate precision and character accuracy (PLATE_SPEC.md "Metrics") computed from
  the detector's output during mmengine validation/testing, so they reach the logs, TensorBoard and the
  checkpoint hook's ``save_best`` next to COCO mAP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from alpr.metrics import PlateMetrics
from alpr.reading import read_arrays


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@METRICS.register_module()
class PlateReadingMetric(BaseMetric):
    """Plate-reading metrics of PLATE_SPEC.md over a COCO split written by :mod:`alpr.coco`.

    Args:
        ann_file: the split's COCO JSON; each image record carries its ground-truth ``plates``
            (``box`` xyxy pixels, ``text``).
        plate_score_thr: minimum plate score kept by the reader.
        char_score_thr: minimum character score kept by the reader.
        prefix: metric name prefix (results are ``plate/eir``, ``plate/plate_precision``, ``plate/char_accuracy``).

    The detector's boxes must be in original-image pixels (mmdetection's default ``rescale=True`` at test time).
    """

    default_prefix = "plate"

    def __init__(self, ann_file: str, plate_score_thr: float = 0.3, char_score_thr: float = 0.3,
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        with open(ann_file, encoding="utf-8") as f:
            coco = json.load(f)
        self.truth = {img["id"]: img.get("plates", []) for img in coco["images"]}
        self.plate_score_thr = plate_score_thr
        self.char_score_thr = char_score_thr

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Read the plates of each predicted sample and keep (truth plates, reading) pairs."""
        for sample in data_samples:
            pred = sample["pred_instances"]
            reading = read_arrays(
                _to_numpy(pred["bboxes"]).reshape(-1, 4),
                _to_numpy(pred["labels"]).astype(int),
                _to_numpy(pred["scores"]),
                plate_score_thr=self.plate_score_thr,
                char_score_thr=self.char_score_thr,
            )
            self.results.append((self.truth.get(sample["img_id"], []), reading))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Aggregate to ``eir``, ``plate_precision``, ``char_accuracy`` (fractions in [0, 1]; NaN when undefined)."""
        acc = PlateMetrics()
        for truth, reading in results:
            acc.add(truth, reading)
        res = acc.result()
        return {k: float(res[k]) for k in ("eir", "plate_precision", "char_accuracy")}
