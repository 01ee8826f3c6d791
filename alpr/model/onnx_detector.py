"""RTMDet in ONNX Runtime: export a trained detector's network, and run it with the same pre- and post-processing as
mmdetection's test pipeline (issue "A fast reader", docs/serving.md).

What is where, and why:

- **In the graph** (``model.onnx``): normalisation (``(BGR - mean) / std``, the config's ``DetDataPreprocessor``),
  backbone, neck and head, and the sigmoid of the class scores. The head already multiplies its box distances by
  the level's stride (``RTMDetSepBNHead.forward``). Outputs, per level of stride 8, 16, 32: ``scores_<s>``
  ``(N, C, H/s, W/s)`` and ``boxes_<s>`` ``(N, 4, H/s, W/s)`` (left, top, right, bottom distances in input pixels).
  Height and width are dynamic (any multiple of 32), and so is the batch.
- **In numpy / OpenCV** (:func:`decode`): score threshold, top-k per level, point priors, distance-to-box decoding,
  clipping, rescaling to the image, class-wise NMS (:func:`batched_nms`, mmcv's algorithm) and ``max_per_img``. These are
  data-dependent (how many boxes pass the threshold) and cheap on a few hundred candidates; in the graph they would
  need ``NonMaxSuppression`` and ``TopK`` with dynamic shapes, which the TorchScript exporter traces with
  constants. mmdetection's ``BaseDenseHead._predict_by_feat_single`` and ``_bbox_post_process`` are the reference;
  :func:`decode` follows them step by step.

Loading an exported model reads only data files: ``model.onnx`` and the ``onnx`` record of ``model.json``
(:class:`OnnxRecord`); no config is executed. Only :func:`export` needs torch and mmdetection.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from alpr.model.stages import NETWORK, POSTPROCESS, PREPROCESS, StageClock, run_groups, timed

__all__ = [
    "ONNX_FILE",
    "ONNX_OPSET",
    "INPUT_NAME",
    "OnnxRecord",
    "OnnxDetector",
    "export",
    "letterbox",
    "decode",
    "batched_nms",
    "file_sha256",
]

#: The exported network's file name, beside ``model.pth`` in a model directory (and in its ``plate_detector/``).
ONNX_FILE = "model.onnx"
#: ONNX opset of the export: 17 is the newest the TorchScript exporter (``dynamo=False``) covers fully, and ONNX
#: Runtime >= 1.14 runs it (DESIGN.md: RTMDet-tiny exported at opset 17 ran 2.1-2.3x eager PyTorch here).
ONNX_OPSET = 17
#: The graph's one input: float32 ``(N, 3, H, W)``, BGR pixels 0-255, H and W multiples of 32.
INPUT_NAME = "image"
#: Value of the padding around an image (mmdetection's ``Pad`` ``pad_val`` of the test pipeline).
PAD_VALUE = 114.0
#: ONNX Runtime session config entries (onnxruntime.ai, "Thread management"). Intra-op threads do not spin-wait for
#: work between operators: with two requests read at once on two cores (the model server's ``--concurrency 2``)
#: spinning threads take the cores from the other request's steps. Measured in docs/serving.md ("Throughput"): two
#: threads, two requests at once, 46.0 images/s spinning and 54.1 not; one request, the same latency either way.
SESSION_CONFIG: Final = {"session.intra_op.allow_spinning": "0"}


@dataclass(frozen=True)
class OnnxRecord:
    """What a runtime needs to read an exported detector, as recorded in ``model.json`` (``onnx``).

    Attributes:
        file: the ONNX file, relative to its model directory.
        sha256: hex digest of that file (checked on load).
        opset: ONNX opset.
        input_name: the graph's input (:data:`INPUT_NAME`).
        output_names: ``scores_<stride>`` for each stride, then ``boxes_<stride>``.
        strides: the head's level strides, pixels (8, 16, 32 for RTMDet).
        input_size: the test pipeline's ``Resize`` long side, pixels.
        mean, std: per-channel BGR normalisation (the config's ``data_preprocessor``), applied in the graph.
        num_classes: the head's classes.
        score_thr, nms_pre, nms_iou, max_per_img, min_bbox_size: the config's ``test_cfg``.
        crop_geometry: for a reader, the name of the crop geometry it was trained on
            (:func:`alpr.model.inference.trained_crop_geometry`); empty for a plate detector.
    """

    file: str
    sha256: str
    opset: int
    input_name: str
    output_names: tuple[str, ...]
    strides: tuple[int, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    score_thr: float
    nms_pre: int
    nms_iou: float
    max_per_img: int
    min_bbox_size: float = 0.0
    crop_geometry: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types."""
        d = asdict(self)
        d["output_names"] = list(self.output_names)
        d["strides"] = list(self.strides)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "model.json") -> OnnxRecord:
        """The record from ``model.json``'s ``onnx`` entry.

        Raises:
            ValueError: a field is missing or has the wrong type (the message names ``where`` and the field).
        """
        try:
            return cls(
                file=str(d["file"]),
                sha256=str(d["sha256"]),
                opset=int(d["opset"]),
                input_name=str(d["input_name"]),
                output_names=tuple(str(n) for n in d["output_names"]),
                strides=tuple(int(s) for s in d["strides"]),
                input_size=int(d["input_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                num_classes=int(d["num_classes"]),
                score_thr=float(d["score_thr"]),
                nms_pre=int(d["nms_pre"]),
                nms_iou=float(d["nms_iou"]),
                max_per_img=int(d["max_per_img"]),
                min_bbox_size=float(d.get("min_bbox_size", 0.0)),
                crop_geometry=str(d.get("crop_geometry", "")),
                extra=dict(d.get("extra", {})),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: onnx record has no field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: onnx record: {exc}") from exc


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(model, out_path: Path, *, input_size: int, crop_geometry: str = "") -> OnnxRecord:
    """Export an mmdetection RTMDet ``model`` (from ``mmdet.apis.init_detector``, in eval mode) to ONNX.

    The graph takes BGR pixels and returns the head's per-level class probabilities and box distances (module
    docstring); it is traced at ``input_size`` square with batch, height and width dynamic.

    Args:
        model: an RTMDet detector (``backbone``, ``neck``, ``bbox_head`` with ``prior_generator.strides``).
        out_path: where to write the ``.onnx`` file.
        input_size: the model's test input (long side, pixels).
        crop_geometry: for a reader, its crop geometry's name (recorded, see :class:`OnnxRecord`).

    Returns:
        The record to store in ``model.json``.

    Raises:
        ValueError: the model is not a single-stage dense detector with the expected head.
    """
    import torch

    head = getattr(model, "bbox_head", None)
    if head is None or not hasattr(head, "prior_generator"):
        raise ValueError(f"{type(model).__name__} has no dense bbox_head with a prior generator: not exportable")
    strides = tuple(int(s[0] if isinstance(s, (tuple, list)) else s) for s in head.prior_generator.strides)
    pre = model.data_preprocessor
    if getattr(pre, "_channel_conversion", False):
        raise ValueError("the model converts BGR to RGB in its data preprocessor; the export expects bgr_to_rgb=False")
    mean = tuple(float(v) for v in pre.mean.reshape(-1).tolist())
    std = tuple(float(v) for v in pre.std.reshape(-1).tolist())
    cfg = model.cfg.model.test_cfg if hasattr(model, "cfg") else head.test_cfg
    net = _exported_net(model).eval()
    names = tuple(f"scores_{s}" for s in strides) + tuple(f"boxes_{s}" for s in strides)
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for n, s in zip(names, strides * 2):
        dynamic[n] = {0: "batch", 2: f"height_{s}", 3: f"width_{s}"}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        torch.onnx.export(
            net,
            (dummy,),
            str(out_path),
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=list(names),
            dynamic_axes=dynamic,
            dynamo=False,
        )
    return OnnxRecord(
        file=out_path.name,
        sha256=file_sha256(out_path),
        opset=ONNX_OPSET,
        input_name=INPUT_NAME,
        output_names=names,
        strides=strides,
        input_size=int(input_size),
        mean=mean,
        std=std,
        num_classes=int(head.num_classes),
        score_thr=float(cfg.get("score_thr", 0.0)),
        nms_pre=int(cfg.get("nms_pre", -1)),
        nms_iou=float(cfg["nms"]["iou_threshold"]),
        max_per_img=int(cfg.get("max_per_img", 100)),
        min_bbox_size=float(cfg.get("min_bbox_size", -1)),
        crop_geometry=crop_geometry,
    )


def _exported_net(model):
    """The module :func:`export` traces (a factory: torch is imported only when exporting)."""
    import torch

    class ExportedNet(torch.nn.Module):
        """Normalisation + backbone + neck + head; sigmoid class scores, then box distances, per level."""

        def __init__(self, det) -> None:
            super().__init__()
            self.det = det
            pre = det.data_preprocessor
            self.register_buffer("mean", pre.mean.detach().clone().reshape(1, -1, 1, 1))
            self.register_buffer("std", pre.std.detach().clone().reshape(1, -1, 1, 1))

        def forward(self, image):
            x = (image - self.mean) / self.std
            cls_scores, bbox_preds = self.det.bbox_head(self.det.neck(self.det.backbone(x)))
            return (*[c.sigmoid() for c in cls_scores], *bbox_preds)

    return ExportedNet(model)


def letterbox(img_bgr: np.ndarray, size: int, *, pad_to_stride: bool = True, stride: int = 32):
    """Resize an image to ``size`` on its long side and pad it, as mmdetection's test pipeline does.

    ``Resize(scale=(size, size), keep_ratio=True)`` (``mmcv.imrescale``: scale factor ``size / long side``, the new
    size rounded half up, bilinear ``cv2.resize``), then ``Pad`` with :data:`PAD_VALUE` at the bottom and right, to
    a multiple of ``stride`` (``pad_to_stride``) or to the ``size`` square.

    Args:
        img_bgr: ``(H, W, 3)`` uint8 BGR.
        size: the input long side, pixels.

    Returns:
        ``(padded (h', w', 3) float32, (h, w) resized shape before padding, (sx, sy) scale factors)``.

    Raises:
        ValueError: the image is not ``(H, W, 3)`` with positive sides.
    """
    import cv2

    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3 or min(img_bgr.shape[:2]) <= 0:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img_bgr.shape}")
    h0, w0 = img_bgr.shape[:2]
    scale = min(size / max(h0, w0), size / min(h0, w0))
    w, h = int(w0 * scale + 0.5), int(h0 * scale + 0.5)
    resized = cv2.resize(img_bgr, (w, h), interpolation=cv2.INTER_LINEAR) if (w, h) != (w0, h0) else img_bgr
    if pad_to_stride:
        ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
    else:
        ph, pw = max(size, h), max(size, w)
    out = np.full((ph, pw, 3), PAD_VALUE, np.float32)
    out[:h, :w] = resized
    return out, (h, w), (w / w0, h / h0)


def decode(
    scores: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    record: OnnxRecord,
    img_shape: tuple[int, int],
    scale_factor: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections from the graph's outputs, as mmdetection's RTMDet ``predict`` with ``rescale=True``.

    Per level (``BaseDenseHead._predict_by_feat_single``): class probabilities above ``score_thr``, the
    ``nms_pre`` highest of them, their point priors (``MlvlPointGenerator``, offset 0: ``(j * s, i * s)``) and
    distances decoded to boxes (``distance2bbox``: ``x1 = px - l``, ..., clipped to ``img_shape``). Then
    (``_bbox_post_process``): boxes divided by ``scale_factor``, boxes of width or height ``<= min_bbox_size``
    dropped, class-wise NMS at ``nms_iou`` (a box is suppressed by a higher-scored one of its class with
    IoU > ``nms_iou``), and the ``max_per_img`` highest kept.

    Args:
        scores: per level ``(C, H_l, W_l)`` probabilities (one image of the ``scores_<s>`` outputs).
        boxes: per level ``(4, H_l, W_l)`` distances in input pixels.
        record: the model's :class:`OnnxRecord`.
        img_shape: ``(h, w)`` that boxes are clipped to: mmdetection's ``img_shape``, which its ``Pad`` transform
            sets to the padded shape (:func:`letterbox`'s array).
        scale_factor: ``(sx, sy)`` of :func:`letterbox`.

    Returns:
        ``(bboxes (N, 4) float64 x1 y1 x2 y2 in original pixels, labels (N,) int64, scores (N,) float64)``, by
        descending score.
    """
    all_scores, all_labels, all_boxes = [], [], []
    for s_map, b_map, stride in zip(scores, boxes, record.strides):
        c, h, w = s_map.shape
        s = s_map.reshape(c, -1).T  # (H*W, C), row-major over the feature map, as mmdetection flattens it
        b = b_map.reshape(4, -1).T
        anchor, label = np.nonzero(s > record.score_thr)
        if not len(anchor):
            continue
        sc = s[anchor, label]
        if 0 < record.nms_pre < len(sc):
            top = np.argsort(-sc, kind="stable")[: record.nms_pre]
            anchor, label, sc = anchor[top], label[top], sc[top]
        px = (anchor % w).astype(np.float32) * stride
        py = (anchor // w).astype(np.float32) * stride
        d = b[anchor]
        xyxy = np.stack([px - d[:, 0], py - d[:, 1], px + d[:, 2], py + d[:, 3]], axis=1)
        all_scores.append(sc)
        all_labels.append(label)
        all_boxes.append(xyxy)
    if not all_scores:
        return np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
    sc = np.concatenate(all_scores).astype(np.float32)
    lab = np.concatenate(all_labels).astype(np.int64)
    bx = np.concatenate(all_boxes).astype(np.float32)
    ih, iw = img_shape
    bx[:, 0::2] = bx[:, 0::2].clip(0, iw)
    bx[:, 1::2] = bx[:, 1::2].clip(0, ih)
    bx = bx / np.array([scale_factor[0], scale_factor[1]] * 2, np.float32)
    if record.min_bbox_size >= 0:
        ok = ((bx[:, 2] - bx[:, 0]) > record.min_bbox_size) & ((bx[:, 3] - bx[:, 1]) > record.min_bbox_size)
        bx, sc, lab = bx[ok], sc[ok], lab[ok]
    if not len(sc):
        return np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0)
    keep = batched_nms(bx, sc, lab, record.nms_iou, max_keep=record.max_per_img)
    return bx[keep].astype(np.float64), lab[keep], sc[keep].astype(np.float64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, *, max_keep: int = -1
) -> np.ndarray:
    """Class-wise greedy non-maximum suppression, as ``mmcv.ops.batched_nms`` computes it on the CPU.

    Each class's boxes are moved apart by ``label * (max coordinate + 1)`` (float32, as mmcv does), then the boxes
    are visited by descending score (a stable sort: ties keep their order) and each suppresses the later ones whose
    IoU with it exceeds ``iou_threshold`` (areas ``(x2 - x1) * (y2 - y1)``, mmcv's ``offset=0``). The greedy visit
    decides the k-th kept box from the earlier ones only, so stopping at ``max_keep`` kept boxes gives the first
    ``max_keep`` of the full result (mmdetection truncates to ``max_per_img`` after NMS) at a fraction of the cost
    when thousands of boxes pass the score threshold.

    Args:
        boxes: ``(N, 4)`` x1 y1 x2 y2.
        scores: ``(N,)``.
        labels: ``(N,)`` int class indices.
        iou_threshold: suppress above this IoU.
        max_keep: stop after this many kept boxes (-1: no limit).

    Returns:
        The indices kept, ``(K,)`` int64, by descending score.
    """
    if not len(boxes):
        return np.zeros(0, np.int64)
    b = boxes.astype(np.float32)
    b = b + (labels.astype(np.float32) * (b.max() + np.float32(1)))[:, None]
    x1, y1, x2, y2 = b.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores.astype(np.float32), kind="stable")
    alive = np.ones(len(order), bool)
    keep = []
    for k, i in enumerate(order):
        if not alive[k]:
            continue
        keep.append(i)
        if len(keep) == max_keep:
            break
        rest = order[k + 1 :][alive[k + 1 :]]
        if not len(rest):
            break
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        alive[k + 1 :][alive[k + 1 :]] = ~(iou > iou_threshold)
    return np.asarray(keep, np.int64)


class OnnxDetector:
    """A detector exported by :func:`export`, run by ONNX Runtime on the CPU.

    Args:
        model_dir: the directory holding ``record.file``.
        record: its :class:`OnnxRecord` (from ``model.json``).
        pad_to_stride: pad inputs to a multiple of 32 (the model's ``pad_to_stride``) rather than to the square.
        threads: ONNX Runtime intra-op threads (0: its default, one per core).

    Raises:
        FileNotFoundError: the ONNX file is missing.
        ValueError: its SHA-256 differs from the record's (the message names the file).
    """

    def __init__(self, model_dir: Path, record: OnnxRecord, *, pad_to_stride: bool = True, threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(model_dir) / record.file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        digest = file_sha256(path)
        if digest != record.sha256:
            raise ValueError(f"{path}: sha256 {digest} differs from model.json's {record.sha256}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        for key, value in SESSION_CONFIG.items():
            opts.add_session_config_entry(key, value)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.record = record
        self.pad_to_stride = pad_to_stride
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    @property
    def input_size(self) -> int:
        """The detector's input long side, pixels."""
        return self.record.input_size

    def run(
        self,
        images_bgr: Sequence[np.ndarray],
        size: int = 0,
        *,
        batched: bool = False,
        clock: StageClock | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Detect in each image: per image ``(bboxes (N, 4), labels (N,), scores (N,))`` as :func:`decode`.

        ``size`` is the input long side (0: the record's). ``batched`` runs the images as one batch, padded at the
        bottom and right to the largest (with the mean pixel, which the graph normalises to 0, as mmdetection's
        data preprocessor pads a batch), else one at a time. ``clock`` (optional) gets the seconds of
        :data:`~alpr.model.stages.PREPROCESS`, :data:`~alpr.model.stages.NETWORK` and
        :data:`~alpr.model.stages.POSTPROCESS`.
        """
        size = int(size) or self.record.input_size
        with timed(clock, PREPROCESS):
            prepared = [letterbox(img, size, pad_to_stride=self.pad_to_stride) for img in images_bgr]
        groups = run_groups(len(prepared), batched)
        out: list[Any] = [None] * len(prepared)
        n = len(self.record.strides)
        for group in groups:
            with timed(clock, PREPROCESS):
                hmax = max(prepared[i][0].shape[0] for i in group)
                wmax = max(prepared[i][0].shape[1] for i in group)
                batch = np.empty((len(group), 3, hmax, wmax), np.float32)
                batch[:] = np.asarray(self.record.mean, np.float32).reshape(1, 3, 1, 1)
                for k, i in enumerate(group):
                    arr = prepared[i][0]
                    batch[k, :, : arr.shape[0], : arr.shape[1]] = arr.transpose(2, 0, 1)
            with timed(clock, NETWORK):
                outputs = self.session.run(list(self.record.output_names), {self.record.input_name: batch})
            with timed(clock, POSTPROCESS):
                for k, i in enumerate(group):
                    padded, _, scale = prepared[i]
                    # mmdetection's Pad sets img_shape to the padded shape: boxes are clipped to that, not the image's
                    img_shape = padded.shape[:2]
                    scores, boxes = [o[k] for o in outputs[:n]], [o[k] for o in outputs[n:]]
                    out[i] = decode(scores, boxes, self.record, img_shape, scale)
        return out
