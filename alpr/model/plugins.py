"""mmdetection plug-ins, registered when a config lists ``custom_imports=dict(imports=["alpr.model.plugins"])``.

- ``PlateReadingMetric``: EIR, plate precision and character accuracy (PLATE_SPEC.md "Metrics") computed from
  the detector's output during mmengine validation/testing, so they reach the logs, TensorBoard and the
  checkpoint hook's ``save_best`` next to COCO mAP.
- ``TimedSnapshotHook``: weights snapshots at fixed intervals of training time, for time-to-accuracy curves.
- ``CPUDistributedDataParallel``: mmengine's DDP wrapper for models on the CPU (the gloo back end), which must be
  built without ``device_ids``; :func:`alpr.model.distributed.scale_config` names it for CPU processes.
- ``PlateZoomCrop``: a training transform that crops the image around one random plate as the two-stage reader's
  zoom pass does (:mod:`alpr.model.crops`), so that the reader learns from what it is shown at inference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import HOOKS, METRICS, TRANSFORMS
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from alpr import spec
from alpr.model.crops import HEIGHT_JITTER, MARGIN_JITTER, SHIFT_JITTER, zoom_crop
from alpr.model.crops import geometry as crop_geometry
from alpr.model.metrics import PlateMetrics
from alpr.model.reading import MIN_REPORTED_CHARACTERS, read_arrays


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
            Plates with no character read are left out, as a served model leaves them out
            (:data:`alpr.model.reading.MIN_REPORTED_CHARACTERS`).
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
                min_characters=MIN_REPORTED_CHARACTERS,
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


@TRANSFORMS.register_module()
class PlateZoomCrop(BaseTransform):
    """Crop the image around one plate, as :func:`alpr.model.inference.zoom_regions` crops a plate found in a
    frame, with jittered margins; boxes are moved into the crop.

    With probability ``prob``, one plate (a :data:`alpr.spec.PLATE_LABELS` box at least ``min_plate_px`` wide) is
    chosen: uniformly, or with ``central`` the one whose centre is nearest the image's (the plate a context crop of
    :mod:`alpr.model.reader_data` was cut around). Its crop (:func:`alpr.model.crops.zoom_crop` with the crop
    ``geometry`` named) gets left and right margins drawn from ``margin_range`` (fractions of the plate's width), a
    height factor drawn from ``height_range`` and a centre shift of up to ``shift`` plate widths / heights, which
    covers the offsets of a detected plate box from the true one. Boxes are clipped to the crop; a box that keeps
    less than ``min_visible`` of its area is dropped (a character cut at the border is not a character any more).
    Images without a plate wide enough are left unchanged.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``. Modified: those and
    ``img_shape``.

    Args:
        prob: probability of cropping, in [0, 1].
        geometry: the crop geometry's name (:data:`alpr.model.crops.GEOMETRIES`: ``zoom`` for the one-detector
            design's zoom pass, ``reader`` for the two-stage reader).
        margin_range: ``(low, high)`` margin left and right, fractions of the plate's width; default
            :data:`alpr.model.crops.MARGIN_JITTER` (0.6-1.4) times the geometry's margin.
        height_range: ``(low, high)`` crop height in plate heights (the crop keeps the geometry's minimum aspect);
            default :data:`alpr.model.crops.HEIGHT_JITTER` (0.8-1.3) times the geometry's height factor.
        shift: largest centre shift, fraction of the plate's width (x) and height (y); default
            :data:`alpr.model.crops.SHIFT_JITTER`.
        min_plate_px: plates narrower than this (pixels) are not chosen (too small to read in any crop).
        min_visible: fraction of a box's area that must stay inside the crop.
        central: choose the plate nearest the image's centre instead of a random one.

    Raises:
        ValueError: a parameter out of range, or an unknown geometry.
    """

    def __init__(
        self,
        prob: float = 0.9,
        geometry: str = "zoom",
        margin_range: tuple[float, float] | None = None,
        height_range: tuple[float, float] | None = None,
        shift: float = SHIFT_JITTER,
        min_plate_px: float = 24.0,
        min_visible: float = 0.6,
        central: bool = False,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"PlateZoomCrop: prob must be in [0, 1], got {prob!r}")
        self.geometry = crop_geometry(geometry)
        self.geometry_name = geometry
        if margin_range is None:
            margin_range = tuple(f * self.geometry.margin_x for f in MARGIN_JITTER)
        if height_range is None:
            height_range = tuple(f * self.geometry.height_factor for f in HEIGHT_JITTER)
        for name, (low, high) in (("margin_range", margin_range), ("height_range", height_range)):
            if not 0.0 <= low <= high:
                raise ValueError(f"PlateZoomCrop: {name} must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if shift < 0 or min_plate_px < 0 or not 0.0 <= min_visible <= 1.0:
            raise ValueError(
                f"PlateZoomCrop: shift and min_plate_px must be >= 0 and min_visible in [0, 1], got "
                f"{shift!r}, {min_plate_px!r}, {min_visible!r}"
            )
        self.prob, self.shift, self.min_plate_px, self.min_visible = prob, shift, min_plate_px, min_visible
        self.margin_range, self.height_range = tuple(margin_range), tuple(height_range)
        self.central = bool(central)
        self._plate_ids = np.array([spec.class_id(label) for label in spec.PLATE_LABELS])

    def transform(self, results: dict) -> dict:
        """Crop ``results`` in place (see the class docstring) and return it."""
        if np.random.rand() >= self.prob:
            return results
        boxes = results["gt_bboxes"]
        xyxy = _to_numpy(boxes.tensor).reshape(-1, 4).astype(np.float64)
        labels = np.asarray(results["gt_bboxes_labels"])
        widths = xyxy[:, 2] - xyxy[:, 0]
        plates = np.flatnonzero(np.isin(labels, self._plate_ids) & (widths >= self.min_plate_px))
        if not len(plates):
            return results
        img = results["img"]
        if self.central:
            centres = (xyxy[plates, :2] + xyxy[plates, 2:]) / 2
            k = int(plates[np.argmin(np.hypot(*(centres - [img.shape[1] / 2, img.shape[0] / 2]).T))])
        else:
            k = int(plates[np.random.randint(len(plates))])
        crop = zoom_crop(
            tuple(xyxy[k]),
            img.shape[:2],
            geometry=self.geometry,
            margin_left=np.random.uniform(*self.margin_range),
            margin_right=np.random.uniform(*self.margin_range),
            height_factor=np.random.uniform(*self.height_range),
            shift=tuple(np.random.uniform(-self.shift, self.shift, size=2)),
        )
        if crop is None:
            return results
        x0, y0, x1, y1 = crop
        moved = xyxy - [x0, y0, x0, y0]
        clipped = np.clip(moved, 0, [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
        area = np.prod(np.clip(moved[:, 2:] - moved[:, :2], 0, None), axis=1)
        kept_area = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
        keep = (kept_area > 0) & (kept_area >= self.min_visible * area)
        results["img"] = np.ascontiguousarray(img[y0:y1, x0:x1])
        results["img_shape"] = results["img"].shape[:2]
        results["gt_bboxes"] = type(boxes)(clipped[keep].astype(np.float32))
        results["gt_bboxes_labels"] = labels[keep]
        results["gt_ignore_flags"] = np.asarray(results["gt_ignore_flags"])[keep]
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(prob={self.prob}, geometry={self.geometry_name!r}, central={self.central}, "
            f"margin_range={self.margin_range}, "
            f"height_range={self.height_range}, shift={self.shift}, min_plate_px={self.min_plate_px}, "
            f"min_visible={self.min_visible})"
        )


# mmengine's root registry: the Runner looks its model wrapper up there (mmengine.runner.Runner.wrap_model).
@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` for a model whose parameters are on the CPU.

    mmengine's Runner always passes ``device_ids=[LOCAL_RANK]`` to a DistributedDataParallel wrapper, and PyTorch
    refuses ``device_ids`` for a CPU module ("device_ids ... only work with ... GPU modules", ``DistributedDataParallel``
    docs: ``device_ids`` must be ``None`` for CPU modules). This wrapper drops them when the module is on the CPU and
    is otherwise mmengine's, so the gloo back end trains data-parallel on CPU processes.
    """

    def __init__(self, module: Any, device_ids: Any = None, **kwargs: Any) -> None:
        on_cpu = all(p.device.type == "cpu" for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)
