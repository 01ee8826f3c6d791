"""An mmdetection detector run in eager PyTorch through its own test pipeline: the PyTorch back end of
:class:`alpr.model.inference.PlateReader` (the ONNX Runtime one is :mod:`alpr.model.onnx_detector`).

Loading executes the model directory's ``config.py`` (mmengine configs are Python); use it only for model
directories you trust, or read the exported ``model.onnx`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alpr.defaults import TRAINING_DEFAULTS
from alpr.model.checkpoints import load_saved_config
from alpr.model.stages import NETWORK, POSTPROCESS, PREPROCESS, StageClock, run_groups, timed

__all__ = ["TorchDetector", "inference_pipeline", "input_size_of"]

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


def inference_pipeline(model, size: int = 0, *, pad_to_stride: bool = True):
    """The test pipeline of an mmdetection ``model`` for in-memory images (``mmdet.LoadImageFromNDArray``).

    Args:
        model: a detector from ``mmdet.apis.init_detector``.
        size: input long side in pixels (``Resize`` scale); 0 keeps the config's.
        pad_to_stride: pad to a multiple of the largest stride (32) instead of the config's square: a 16:9 frame at
            320 costs 320 x 192 instead of 320 x 320 (the network is fully convolutional).

    Returns:
        an ``mmcv.transforms.Compose`` for ``inference_detector(..., test_pipeline=...)``.
    """
    import copy

    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    steps = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    steps[0].type = "mmdet.LoadImageFromNDArray"
    for step in steps:
        if step.get("type") == "Resize" and size:
            step["scale"] = (size, size)
        elif step.get("type") == "Pad" and pad_to_stride:
            step.pop("size", None)
            step["size_divisor"] = 32
    return Compose(steps)


def input_size_of(model) -> int:
    """A detector's input (long side after its test pipeline's ``Resize``), pixels."""
    for step in model.cfg.test_dataloader.dataset.pipeline:
        if step.get("type") == "Resize":
            return int(max(step["scale"]))
    return TRAINING_DEFAULTS.input_size


class TorchDetector:
    """A trained mmdetection detector (``config.py`` + ``model.pth``) in eager PyTorch.

    Args:
        config: the merged mmdetection config file.
        checkpoint: its weights.
        device: torch device string.
        pad_to_stride: see :func:`inference_pipeline`.

    Raises:
        FileNotFoundError: a file is missing.
    """

    def __init__(self, config: Path, checkpoint: Path, device: str = "cpu", *, pad_to_stride: bool = True) -> None:
        from mmdet.apis import init_detector

        import alpr.model.plugins  # noqa: F401  (registers PlateReadingMetric and PlateZoomCrop named by configs)

        self.model = init_detector(load_saved_config(Path(config)), str(checkpoint), device=device)
        self.pad_to_stride = pad_to_stride
        self._pipelines: dict[int, object] = {}

    @property
    def input_size(self) -> int:
        """The detector's input long side, pixels."""
        return input_size_of(self.model)

    @property
    def cfg(self):
        """The model's mmengine config."""
        return self.model.cfg

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The classes its checkpoint was trained on (``dataset_meta``), None when it does not say."""
        meta = self.model.dataset_meta
        return tuple(meta["classes"]) if meta and "classes" in meta else None

    def pipeline(self, size: int):
        """The test pipeline at input ``size`` (:func:`inference_pipeline`), built once per size."""
        if size not in self._pipelines:
            self._pipelines[size] = inference_pipeline(self.model, size, pad_to_stride=self.pad_to_stride)
        return self._pipelines[size]

    def run(
        self,
        images_bgr: Sequence[np.ndarray],
        size: int = 0,
        *,
        batched: bool = False,
        clock: StageClock | None = None,
    ) -> list[Detections]:
        """Detect in each image; per image ``(bboxes (N, 4) float64, labels (N,) int, scores (N,) float64)`` in
        that image's pixels, after the config's ``test_cfg`` (score threshold, NMS, ``max_per_img``).

        ``batched`` runs the images through the network as one batch (the data preprocessor pads them to the
        largest, a multiple of 32, at the bottom and right; boxes are mapped back per image), else one at a time as
        ``mmdet.apis.inference_detector`` does. The zoomed crops of one frame are all about the same size, so a
        batch costs little padding and saves the per-call overhead of the network.

        The steps are those of ``inference_detector`` and ``BaseModel.test_step`` (test pipeline, data
        preprocessor, then for a single-stage detector ``extract_feat``, the head's forward and ``predict_by_feat``,
        as ``SingleStageDetector.predict`` runs them), spelled out so that ``clock`` (optional) gets the seconds of
        :data:`~alpr.model.stages.PREPROCESS`, :data:`~alpr.model.stages.NETWORK` and
        :data:`~alpr.model.stages.POSTPROCESS`. Other detectors run ``predict`` whole, timed as the network.
        """
        import torch
        from mmdet.models.detectors import SingleStageDetector

        if not images_bgr:
            return []
        pipeline = self.pipeline(size)
        groups = run_groups(len(images_bgr), batched)
        out: list = [None] * len(images_bgr)
        for group in groups:
            with timed(clock, PREPROCESS):
                data = [pipeline({"img": images_bgr[i], "img_id": 0}) for i in group]
                batch = self.model.data_preprocessor(
                    {"inputs": [d["inputs"] for d in data], "data_samples": [d["data_samples"] for d in data]}, False
                )
            with torch.no_grad():
                if isinstance(self.model, SingleStageDetector):
                    with timed(clock, NETWORK):
                        outs = self.model.bbox_head(self.model.extract_feat(batch["inputs"]))
                    with timed(clock, POSTPROCESS):
                        metas = [sample.metainfo for sample in batch["data_samples"]]
                        preds = self.model.bbox_head.predict_by_feat(*outs, batch_img_metas=metas, rescale=True)
                else:
                    with timed(clock, NETWORK):
                        preds = [r.pred_instances for r in self.model(**batch, mode="predict")]
            with timed(clock, POSTPROCESS):
                for i, pred in zip(group, preds):
                    out[i] = (
                        pred.bboxes.cpu().numpy().reshape(-1, 4).astype(np.float64),
                        pred.labels.cpu().numpy(),
                        pred.scores.cpu().numpy().astype(np.float64),
                    )
        return out
