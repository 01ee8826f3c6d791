"""Reading plates with a trained model: mmdetection inference + :mod:`alpr.model.reading`.

A *model directory* (what Evaluate selects and publishes to storage) holds::

    config.py    the merged mmdetection config the model was trained with
    model.pth    the selected checkpoint
    model.json   metadata: classes, input size, reading thresholds, metrics, lineage

:class:`PlateReader` loads it once and reads images (BGR or RGB arrays, or files).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alpr import spec, storage
from alpr.defaults import TRAINING_DEFAULTS
from alpr.metadata import MetadataStore
from alpr.model.checkpoints import load_saved_config, trusted_checkpoint_loading
from alpr.model.reading import read_arrays
from alpr.settings import load_settings

log = logging.getLogger(__name__)

CONFIG_FILE = "config.py"
CHECKPOINT_FILE = "model.pth"
METADATA_FILE = "model.json"
#: Default reading thresholds (plate and character scores), overridable per model in model.json.
DEFAULT_THRESHOLDS = {"plate_score_thr": 0.3, "char_score_thr": 0.3}
#: Plates narrower than this at the detector's input (pixels) are read again from a zoomed crop (0: never);
#: overridable per model in model.json (``zoom_below_px``), chosen on val by Evaluate.
DEFAULT_ZOOM_BELOW_PX = 0
#: Zoomed crop around a plate box of width w, height h: w * ZOOM_MARGIN_X added left and right, and a height of
#: max(ZOOM_HEIGHT_FACTOR * h, ZOOM_MIN_ASPECT * crop width) centred on the plate, so that the plate fills about
#: half of the crop's width, as the widest training plates fill their images.
ZOOM_MARGIN_X = 0.5
#: Detector input (long side, pixels) for the zoomed crops; 0: the model's own input size. Overridable per model in
#: model.json (``zoom_input_px``), chosen on val by Evaluate. A smaller input makes the second pass cheaper.
DEFAULT_ZOOM_INPUT_PX = 0
ZOOM_HEIGHT_FACTOR = 3.0
ZOOM_MIN_ASPECT = 9 / 16


class ModelError(RuntimeError):
    """A model directory is missing a file or cannot be loaded; the message names the path."""


def resolve_model_uri(uri: str, *, db_url: str | None = None) -> str:
    """Map ``latest`` to the latest selected model's storage URI in the metadata store; other URIs unchanged.

    Raises:
        ModelError: ``latest`` was asked for and no model has been selected yet.
    """
    if uri != "latest":
        return uri

    store = MetadataStore(db_url or load_settings().db_url)
    store.create_schema()  # idempotent; a fresh workspace simply has no model yet
    model = store.latest_selected_model()
    if model is None:
        raise ModelError(f"no selected model in the metadata store {store.url_for_display}; run the pipeline first")
    return model["uri"]


def fetch_model(uri: str, cache_dir: Path) -> Path:
    """Return a local model directory for ``uri`` (a folder, ``file://`` or ``gs://``), downloading if needed.

    Raises:
        ModelError: the directory lacks ``config.py`` or ``model.pth``.
    """

    local = Path(storage.fetch(uri, Path(cache_dir)))
    for name in (CONFIG_FILE, CHECKPOINT_FILE):
        if not (local / name).is_file():
            raise ModelError(
                f"model {uri}: {name} missing (expected {CONFIG_FILE}, {CHECKPOINT_FILE}, {METADATA_FILE})"
            )
    return local


class PlateReader:
    """An mmdetection detector plus the plate reader of PLATE_SPEC.md.

    Args:
        model_dir: local model directory (see module docstring).
        device: torch device string (``"cpu"``, ``"cuda:0"``).
        plate_score_thr, char_score_thr: override the model's reading thresholds.
        zoom_below_px: override the model's zoom setting (see :meth:`detect`); 0 turns zooming off.
        zoom_input_px: override the detector input used for zoomed crops (0: the model's input size).

    Raises:
        ModelError: files missing or the checkpoint does not load.
    """

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        *,
        plate_score_thr: float | None = None,
        char_score_thr: float | None = None,
        zoom_below_px: int | None = None,
        zoom_input_px: int | None = None,
    ) -> None:
        from mmdet.apis import init_detector

        import alpr.model.plugins  # noqa: F401  (mmdet-dependent: registers PlateReadingMetric named by the config)

        self.model_dir = Path(model_dir)
        meta_path = self.model_dir / METADATA_FILE
        self.metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        thresholds = {**DEFAULT_THRESHOLDS, **self.metadata.get("thresholds", {})}
        if plate_score_thr is not None:
            thresholds["plate_score_thr"] = plate_score_thr
        if char_score_thr is not None:
            thresholds["char_score_thr"] = char_score_thr
        self.thresholds = thresholds
        self.zoom_below_px = int(
            self.metadata.get("zoom_below_px", DEFAULT_ZOOM_BELOW_PX) if zoom_below_px is None else zoom_below_px
        )
        self.zoom_input_px = int(
            self.metadata.get("zoom_input_px", DEFAULT_ZOOM_INPUT_PX) if zoom_input_px is None else zoom_input_px
        )
        self._pipelines: dict[int, object] = {}
        #: Pad images to a multiple of 32 instead of the square training input (see :meth:`_pipeline`).
        self.pad_to_stride = bool(self.metadata.get("pad_to_stride", True))
        try:
            self.model = init_detector(
                load_saved_config(self.model_dir / CONFIG_FILE), str(self.model_dir / CHECKPOINT_FILE), device=device
            )
        except FileNotFoundError as exc:
            raise ModelError(f"model {self.model_dir}: {exc}") from exc
        classes = (
            tuple(self.model.dataset_meta.get("classes", spec.CLASSES)) if self.model.dataset_meta else spec.CLASSES
        )
        if classes != spec.CLASSES:
            raise ModelError(f"model {self.model_dir} predicts classes {classes}, expected {spec.CLASSES}")

    @property
    def input_size(self) -> int:
        """The detector's input (long side after the test pipeline's ``Resize``), pixels."""
        for step in self.model.cfg.test_dataloader.dataset.pipeline:
            if step.get("type") == "Resize":
                return int(max(step["scale"]))
        return TRAINING_DEFAULTS.input_size

    def _pipeline(self, size: int):
        """The test pipeline for in-memory images at input ``size`` (long side; the config's own when 0)."""
        if size not in self._pipelines:
            import copy

            from mmcv.transforms import Compose
            from mmdet.utils import get_test_pipeline_cfg

            steps = copy.deepcopy(get_test_pipeline_cfg(self.model.cfg))
            steps[0].type = "mmdet.LoadImageFromNDArray"
            for step in steps:
                if step.get("type") == "Resize" and size:
                    step["scale"] = (size, size)
                elif step.get("type") == "Pad" and self.pad_to_stride:
                    # Pad to the detector's largest stride only, not to a square: a 16:9 frame costs 320 x 192
                    # instead of 320 x 320 (the network is fully convolutional).
                    step.pop("size", None)
                    step["size_divisor"] = 32
            self._pipelines[size] = Compose(steps)
        return self._pipelines[size]

    def _run(
        self,
        images_bgr: Sequence[np.ndarray],
        size: int = 0,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        from mmdet.apis import inference_detector

        if not images_bgr:
            return []
        results = inference_detector(self.model, list(images_bgr), test_pipeline=self._pipeline(size))
        out = []
        for res in results:
            pred = res.pred_instances
            out.append(
                (
                    pred.bboxes.cpu().numpy().reshape(-1, 4).astype(np.float64),
                    pred.labels.cpu().numpy(),
                    pred.scores.cpu().numpy().astype(np.float64),
                )
            )
        return out

    def detect(
        self, images_bgr: Sequence[np.ndarray], zoom_below_px: int | None = None, zoom_input_px: int | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run the detector on each image; re-read small plates from zoomed crops.

        A plate found with ``score >= plate_score_thr`` whose box is narrower than ``zoom_below_px`` pixels at the
        detector's input (the image resized to :attr:`input_size` on its long side) is cut out with margins
        (:data:`ZOOM_MARGIN_X`, :data:`ZOOM_HEIGHT_FACTOR`, :data:`ZOOM_MIN_ASPECT`) and run through the detector
        again, where its characters get several times more pixels; the characters found in the crop whose
        centres lie in the plate's box replace those of the first pass there. This is the plate-then-characters
        two-stage design of classic ALPR done with the one detector, and only where the plate is small.

        Args:
            images_bgr: HxWx3 uint8 arrays in BGR order (OpenCV's), any size.
            zoom_below_px: override this reader's :attr:`zoom_below_px` (0: no second pass).
            zoom_input_px: override this reader's :attr:`zoom_input_px` (the crops' detector input; 0: the model's).

        Returns:
            Per image ``(bboxes (N, 4) float x1 y1 x2 y2 in that image's pixels, labels (N,) int class indices,
            scores (N,) float)``, before any reading threshold (the config's ``test_cfg.score_thr`` applies).
        """
        zoom = self.zoom_below_px if zoom_below_px is None else int(zoom_below_px)
        return self.detect_zoom_choices(images_bgr, (zoom,), zoom_input_px)[zoom]

    def detect_zoom_choices(
        self, images_bgr: Sequence[np.ndarray], zoom_choices: Sequence[int], zoom_input_px: int | None = None
    ) -> dict[int, list[Detections]]:
        """:meth:`detect` for several ``zoom_below_px`` values at the cost of the largest one.

        The first pass runs once; the crops of the plates narrower than the largest value run once; each value
        then merges the crops of its own plates (those narrower than it at the detector's input). Images and
        crops are run one at a time, so the result for each value equals ``detect(images, zoom_below_px=value)``.

        Returns:
            ``{value: per-image detections as detect returns them}`` for every value of ``zoom_choices``.

        Raises:
            ValueError: ``zoom_choices`` is empty.
        """
        choices = [int(z) for z in zoom_choices]
        if not choices:
            raise ValueError("zoom_choices is empty")
        images = list(images_bgr)
        first = self._run(images)
        widest = max(choices)
        crops, where = [], []
        if widest > 0:
            for i, (img, dets) in enumerate(zip(images, first)):
                scale = self.input_size / max(img.shape[:2])
                for plate_box, (cx0, cy0, cx1, cy1) in zoom_regions(
                    img.shape[:2], dets, self.input_size, widest, self.thresholds["plate_score_thr"]
                ):
                    crops.append(np.ascontiguousarray(img[cy0:cy1, cx0:cx1]))
                    where.append((i, plate_box, (cx0, cy0), (plate_box[2] - plate_box[0]) * scale))
        crop_size = self.zoom_input_px if zoom_input_px is None else int(zoom_input_px)
        crop_dets = self._run(crops, crop_size)
        out: dict[int, list[Detections]] = {}
        for zoom in choices:
            merged = list(first)
            for (i, plate_box, offset, width), dets in zip(where, crop_dets):
                if width < zoom:
                    merged[i] = merge_zoomed(merged[i], plate_box, offset, dets)
            out[zoom] = merged
        return out

    def read(self, images_bgr: Sequence[np.ndarray]) -> list[dict]:
        """Read the plates of each image.

        Args:
            images_bgr: HxWx3 uint8 arrays in BGR order (OpenCV's), any size.

        Returns:
            One PLATE_SPEC reading per image, boxes in that image's pixels.
        """
        return [read_arrays(b, labels, s, **self.thresholds) for b, labels, s in self.detect(images_bgr)]

    def detect_files(
        self,
        paths: Sequence[Path],
        batch_size: int = 4,
        zoom_below_px: int | None = None,
        zoom_input_px: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`detect` on image files, in batches.

        Raises:
            ValueError: a file cannot be decoded as an image (the message names it).
        """
        zoom = self.zoom_below_px if zoom_below_px is None else int(zoom_below_px)
        return self.detect_files_zoom_choices(paths, (zoom,), batch_size, zoom_input_px)[zoom]

    def detect_files_zoom_choices(
        self, paths: Sequence[Path], zoom_choices: Sequence[int], batch_size: int = 4, zoom_input_px: int | None = None
    ) -> dict[int, list[Detections]]:
        """:meth:`detect_zoom_choices` on image files, decoded ``batch_size`` at a time.

        Raises:
            ValueError: a file cannot be decoded as an image (the message names it), or ``zoom_choices`` is empty.
        """
        import cv2

        out: dict[int, list[Detections]] = {int(z): [] for z in zoom_choices}
        for i in range(0, len(paths), batch_size):
            batch = []
            for p in paths[i : i + batch_size]:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError(f"{p}: not a decodable image")
                batch.append(img)
            for zoom, dets in self.detect_zoom_choices(batch, zoom_choices, zoom_input_px).items():
                out[zoom].extend(dets)
        return out

    def read_files(self, paths: Sequence[Path], batch_size: int = 4) -> list[dict]:
        """Decode image files (any format OpenCV reads) and read them in batches.

        Raises:
            ValueError: a file cannot be decoded as an image (the message names it).
        """
        return [read_arrays(b, labels, s, **self.thresholds) for b, labels, s in self.detect_files(paths, batch_size)]


Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


def zoom_regions(
    image_hw: tuple[int, int], dets: Detections, input_size: int, zoom_below_px: int, plate_score_thr: float
) -> list[tuple[tuple[float, float, float, float], tuple[int, int, int, int]]]:
    """The plates of one image to read again from a zoomed crop, and their crops.

    Args:
        image_hw: the image's ``(height, width)``, pixels.
        dets: the image's detections ``(bboxes (N, 4), labels (N,), scores (N,))``.
        input_size: the detector's input long side, pixels.
        zoom_below_px: zoom plates narrower than this at the detector's input.
        plate_score_thr: only plates scored at least this.

    Returns:
        ``[(plate box (x1, y1, x2, y2), crop (x0, y0, x1, y1) integer pixels inside the image), ...]``; the crop
        adds :data:`ZOOM_MARGIN_X` of the plate's width left and right and is
        ``max(ZOOM_HEIGHT_FACTOR * h, ZOOM_MIN_ASPECT * crop width)`` high, centred on the plate, clipped to the
        image; crops under 8 px either way are skipped.
    """
    h_img, w_img = image_hw
    boxes, labels, scores = dets
    scale = input_size / max(h_img, w_img)
    plate_ids = [spec.class_id(label) for label in spec.PLATE_LABELS]
    out = []
    for k in np.flatnonzero(np.isin(labels, plate_ids) & (scores >= plate_score_thr)):
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        if not (x2 > x1 and y2 > y1) or (x2 - x1) * scale >= zoom_below_px:
            continue
        cw = (x2 - x1) * (1 + 2 * ZOOM_MARGIN_X)
        ch = max((y2 - y1) * ZOOM_HEIGHT_FACTOR, cw * ZOOM_MIN_ASPECT)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        crop = (
            int(max(0, cx - cw / 2)),
            int(max(0, cy - ch / 2)),
            int(min(w_img, cx + cw / 2)),
            int(min(h_img, cy + ch / 2)),
        )
        if crop[2] - crop[0] >= 8 and crop[3] - crop[1] >= 8:
            out.append(((x1, y1, x2, y2), crop))
    return out


def merge_zoomed(
    dets: Detections, plate_box: tuple[float, float, float, float], offset: tuple[int, int], crop_dets: Detections
) -> Detections:
    """Replace the characters of one plate by those detected in its zoomed crop.

    Characters (of ``dets``, image pixels) whose centre lies in ``plate_box`` are dropped; characters of
    ``crop_dets`` (crop pixels, moved by ``offset`` = the crop's top-left corner) whose centre lies in
    ``plate_box`` are added. Plates and everything outside the box are kept as they were.

    Returns:
        The merged ``(bboxes (M, 4), labels (M,), scores (M,))``.
    """
    char_ids = np.arange(len(spec.CHARACTERS))
    x1, y1, x2, y2 = plate_box

    def inside(b: np.ndarray) -> np.ndarray:
        if not len(b):
            return np.zeros(0, bool)
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        return (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)

    boxes, labels, scores = (np.asarray(a) for a in dets)
    cb, cl, cs = (np.asarray(a) for a in crop_dets)
    boxes, cb = boxes.reshape(-1, 4).astype(np.float64), cb.reshape(-1, 4).astype(np.float64)
    cb = cb + np.array([offset[0], offset[1], offset[0], offset[1]], dtype=np.float64)
    keep = ~(np.isin(labels, char_ids) & inside(boxes))
    new = np.isin(cl, char_ids) & inside(cb)
    return (
        np.concatenate([boxes[keep], cb[new]]),
        np.concatenate([labels[keep], cl[new]]).astype(np.int64),
        np.concatenate([scores[keep], cs[new]]).astype(np.float64),
    )


def write_model_dir(out_dir: Path, config_path: Path, checkpoint: Path, metadata: dict) -> Path:
    """Assemble a model directory from a trained config and checkpoint; returns ``out_dir``.

    The checkpoint is reduced to its weights and plain metadata (no optimizer state, no pickled objects), so
    the served model loads with ``torch.load(weights_only=True)`` and is about a third of the size.
    """
    import shutil

    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, out_dir / CONFIG_FILE)

    with trusted_checkpoint_loading():
        ckpt = torch.load(str(checkpoint), map_location="cpu")
    # Weights plus plain-typed metadata only: loads with torch.load(weights_only=True), no pickled objects.
    trained = ckpt.get("meta", {})
    slim_meta = {
        "dataset_meta": {"classes": list(spec.CLASSES)},
        "epoch": int(trained.get("epoch", 0) or 0),
        "iter": int(trained.get("iter", 0) or 0),
        "mmdet_version": str(trained.get("mmdet_version", "")),
    }
    slim = {"meta": slim_meta, "state_dict": ckpt["state_dict"]}
    torch.save(slim, str(out_dir / CHECKPOINT_FILE))
    meta = {"classes": list(spec.CLASSES), "thresholds": dict(DEFAULT_THRESHOLDS), **metadata}
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out_dir
