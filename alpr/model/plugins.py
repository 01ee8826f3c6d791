"""mmdetection plug-ins, registered when a config lists ``custom_imports=dict(imports=["alpr.model.plugins"])``.

- ``PlateReadingMetric``: EIR, plate precision and character accuracy (PLATE_SPEC.md "Metrics") computed from
  the detector's output during mmengine validation/testing, so they reach the logs, TensorBoard and the
  checkpoint hook's ``save_best`` next to COCO mAP.
- ``TimedSnapshotHook``: weights snapshots at fixed intervals of training time, for time-to-accuracy curves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmdet.registry import HOOKS, METRICS
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from alpr.model.metrics import PlateMetrics
from alpr.model.reading import read_arrays


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@METRICS.register_module()
class PlateReadingMetric(BaseMetric):
    """Plate-reading metrics of PLATE_SPEC.md over a COCO split written by :mod:`alpr.data.coco`.

    Args:
        ann_file: the split's COCO JSON; each image record carries its ground-truth ``plates``
            (``box`` xyxy pixels, ``text``).
        plate_score_thr: minimum plate score kept by the reader.
        char_score_thr: minimum character score kept by the reader.
        prefix: metric name prefix (results are ``plate/eir``, ``plate/plate_precision``, ``plate/char_accuracy``).

    The detector's boxes must be in original-image pixels (mmdetection's default ``rescale=True`` at test time).
    """

    default_prefix = "plate"

    def __init__(
        self,
        ann_file: str,
        plate_score_thr: float = 0.3,
        char_score_thr: float = 0.3,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
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


@HOOKS.register_module()
class TimedSnapshotHook(Hook):
    """Save the model's weights every ``interval_s`` seconds of *training* time (validation excluded), for a
    time-to-accuracy curve (``benchmarks/bench_train.py`` evaluates the snapshots on the val split afterwards).

    Args:
        interval_s: training seconds between snapshots (> 0).
        out_dir: folder for ``t<seconds>.pth`` (weights-only, ``{"state_dict", "meta"}``) and ``snapshots.json``
            (one record per snapshot: file, train_seconds, wall_seconds, iter, epoch, images).

    Training time is measured from the first training iteration, with the time spent in validation loops
    subtracted, so the curve's x axis is what a run without validation would take. A final snapshot is saved
    after the last iteration.

    Raises:
        ValueError: ``interval_s`` is not positive.
    """

    priority = "VERY_LOW"

    def __init__(self, interval_s: float, out_dir: str) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.out_dir = out_dir
        self.records: list[dict] = []
        self._start: float | None = None
        self._val_start: float | None = None
        self._val_seconds = 0.0
        self._next = self.interval_s
        self._images = 0

    def _train_seconds(self) -> float:
        import time

        return 0.0 if self._start is None else time.perf_counter() - self._start - self._val_seconds

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        import time

        if self._start is None:
            self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if data_batch is not None and "inputs" in data_batch:
            self._images += len(data_batch["inputs"])
        if self._train_seconds() >= self._next:
            self._save(runner)
            while self._next <= self._train_seconds():
                self._next += self.interval_s

    def before_val(self, runner) -> None:
        import time

        self._val_start = time.perf_counter()

    def after_val(self, runner) -> None:
        import time

        if self._val_start is not None and self._start is not None:
            self._val_seconds += time.perf_counter() - self._val_start
        self._val_start = None

    def after_train(self, runner) -> None:
        if not self.records or self.records[-1]["iter"] != runner.iter:
            self._save(runner)

    def _save(self, runner) -> None:
        import json
        import os
        import time

        import torch
        from mmengine.model import is_model_wrapper

        os.makedirs(self.out_dir, exist_ok=True)
        seconds = self._train_seconds()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        name = f"t{int(round(seconds)):06d}.pth"
        meta = {
            "iter": int(runner.iter),
            "epoch": int(runner.epoch),
            "train_seconds": seconds,
            "dataset_meta": {"classes": list(runner.train_dataloader.dataset.metainfo["classes"])},
        }
        torch.save({"state_dict": model.state_dict(), "meta": meta}, os.path.join(self.out_dir, name))
        self.records.append(
            {
                "file": name,
                "train_seconds": round(seconds, 1),
                "iter": int(runner.iter),
                "epoch": int(runner.epoch),
                "images": self._images,
                "wall_seconds": round(time.time(), 1),
            }
        )
        with open(os.path.join(self.out_dir, "snapshots.json"), "w", encoding="utf-8") as f:
            json.dump(self.records, f, indent=2)
