"""Reading plates with a trained model: mmdetection inference + :mod:`alpr.model.reading`.

A *model directory* (what Evaluate selects and publishes to storage) holds::

    config.py        the merged mmdetection config the model was trained with
    model.pth        the selected checkpoint
    model.json       metadata: classes, input size, reading thresholds, metrics, lineage
    model.onnx       optional: the network exported for ONNX Runtime (:mod:`alpr.model.onnx_detector`), recorded
                     in model.json under ``onnx``
    plate_detector/  optional first stage: config.py + model.pth (+ model.onnx) of a plate detector (two-stage design)

:class:`PlateReader` loads it once and reads images (BGR or RGB arrays, or files), with ONNX Runtime when the
directory has an export, else with PyTorch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alpr import spec, storage
from alpr.metadata import MetadataStore
from alpr.model.checkpoints import trusted_checkpoint_loading
from alpr.model.crops import ZOOM_GEOMETRY, CropGeometry, zoom_crop
from alpr.model.crops import geometry as crop_geometry
from alpr.model.onnx_detector import ONNX_FILE, OnnxDetector, OnnxRecord, export
from alpr.model.reading import MIN_REPORTED_CHARACTERS, read_arrays
from alpr.model.stages import READING, ZOOM, StageClock, timed
from alpr.model.torch_detector import TorchDetector
from alpr.settings import load_settings

log = logging.getLogger(__name__)

CONFIG_FILE = "config.py"
CHECKPOINT_FILE = "model.pth"
METADATA_FILE = "model.json"
#: Default reading thresholds (plate and character scores, overridable per model in model.json) and the fewest
#: characters a reported plate holds (:data:`alpr.model.reading.MIN_REPORTED_CHARACTERS`).
DEFAULT_THRESHOLDS = {"plate_score_thr": 0.3, "char_score_thr": 0.3, "min_characters": MIN_REPORTED_CHARACTERS}
#: Plates narrower than this at the detector's input (pixels) are read again from a zoomed crop (0: never);
#: overridable per model in model.json (``zoom_below_px``), chosen on val by Evaluate.
DEFAULT_ZOOM_BELOW_PX = 0
#: Detector input (long side, pixels) for the zoomed crops; 0: the model's own input size. Overridable per model in
#: model.json (``zoom_input_px``), chosen on val by Evaluate. A smaller input makes the second pass cheaper.
DEFAULT_ZOOM_INPUT_PX = 0
#: The optional first stage of a model directory: a plate detector (``config.py`` + ``model.pth`` predicting
#: :data:`alpr.spec.PLATE_LABELS`) that finds plates in the whole frame at its own, larger input; every plate it finds
#: is then read from a zoomed crop by the model directory's own detector (docs/detection_design.md).
PLATE_DETECTOR_DIR = "plate_detector"
#: ``model.json``'s record of the ONNX export: ``{"reader": OnnxRecord, "plate_detector": OnnxRecord}`` (the second
#: for two-stage models only; :class:`alpr.model.onnx_detector.OnnxRecord`).
ONNX_KEY = "onnx"
#: :class:`PlateReader`'s back ends: ``auto`` takes ONNX Runtime when the model has an export, else PyTorch.
BACKENDS = ("auto", "onnx", "pytorch")
#: The back end when none is asked for.
DEFAULT_BACKEND = "auto"


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
    """An mmdetection detector plus the plate reader of PLATE_SPEC.md, on one of two back ends.

    The **ONNX Runtime** back end reads the model directory's exported networks (``model.onnx``, and
    ``plate_detector/model.onnx`` for the two-stage design; :mod:`alpr.model.onnx_detector`) and the ``onnx`` record
    of ``model.json``: data files only, no code from the model directory runs, and neither torch nor mmdetection is
    imported. The **PyTorch** back end loads ``config.py`` + ``model.pth`` with mmdetection
    (:class:`alpr.model.torch_detector.TorchDetector`), which executes ``config.py``. Everything after the networks
    (zoomed crops, merging, reading rules) is shared.

    Args:
        model_dir: local model directory (see module docstring).
        device: torch device string (``"cpu"``, ``"cuda:0"``) of the PyTorch back end.
        plate_score_thr, char_score_thr: override the model's reading thresholds.
        zoom_below_px: override the model's zoom setting (see :meth:`detect`); 0 turns zooming off.
        zoom_input_px: override the detector input used for zoomed crops (0: the model's input size).
        backend: ``"auto"`` (ONNX Runtime when ``model.json`` records an export, else PyTorch), ``"onnx"`` or
            ``"pytorch"`` (:data:`BACKENDS`).
        threads: ONNX Runtime intra-op threads (0: one per core).

    Raises:
        ModelError: files missing, the checkpoint does not load, ``backend="onnx"`` on a model without an export,
            an exported file whose SHA-256 differs from ``model.json``'s, or the PyTorch back end asked for (or
            needed: no export) where torch or mmdetection is not installed (the serving image).
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
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
        backend: str = DEFAULT_BACKEND,
        threads: int = 0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model_dir = Path(model_dir)
        meta_path = self.model_dir / METADATA_FILE
        self.metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        thresholds = model_thresholds(self.metadata)
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
        #: Pad images to a multiple of 32 instead of the square training input (see :func:`alpr.model.torch_detector.inference_pipeline`).
        self.pad_to_stride = bool(self.metadata.get("pad_to_stride", True))
        exported = self.metadata.get(ONNX_KEY)
        if backend == "onnx" and not exported:
            raise ModelError(f"model {self.model_dir}: no ONNX export in {METADATA_FILE} (Evaluate writes one)")
        #: ``"onnx"`` or ``"pytorch"``: the back end in use.
        self.backend = "onnx" if exported and backend != "pytorch" else "pytorch"
        if self.backend == "onnx":
            self._load_onnx(exported, threads)
        else:
            self._load_torch(device)
        #: Read a frame's zoomed crops through the network as one batch (:meth:`_run`).
        self.batch_crops = True

    def _load_torch(self, device: str) -> None:
        def load(where: Path, classes: tuple[str, ...], what: str):
            try:
                det = TorchDetector(
                    where / CONFIG_FILE, where / CHECKPOINT_FILE, device, pad_to_stride=self.pad_to_stride
                )
            except FileNotFoundError as exc:
                raise ModelError(f"model {self.model_dir}: {what}{exc}") from exc
            except ImportError as exc:  # the serving image: ONNX Runtime only (docs/containers.md)
                raise ModelError(
                    f"model {self.model_dir}: no ONNX export in {METADATA_FILE}, and the PyTorch back end cannot "
                    f"run here ({exc}); export the model with `alpr export-onnx {self.model_dir}` where torch and "
                    "mmdetection are installed (the components image, a `make install` environment)"
                ) from exc
            _check_classes(det.classes or classes, classes, where)
            return det

        self.detector = load(self.model_dir, spec.CLASSES, "")
        #: The first stage (:data:`PLATE_DETECTOR_DIR`), or None for the one-detector design.
        self.plate_detector = None
        plate_dir = self.model_dir / PLATE_DETECTOR_DIR
        if (plate_dir / CONFIG_FILE).is_file():
            self.plate_detector = load(plate_dir, spec.PLATE_LABELS, "plate detector: ")
        #: The geometry of the crops the reader reads (:func:`trained_crop_geometry`).
        self.crop_geometry = trained_crop_geometry(self.detector.cfg)

    def _load_onnx(self, exported: dict, threads: int) -> None:
        def load(where: Path, entry: dict | None, classes: tuple[str, ...], what: str):
            if not isinstance(entry, dict):
                raise ModelError(f"model {self.model_dir}: {METADATA_FILE} {ONNX_KEY}.{what} is missing")
            try:
                record = OnnxRecord.from_json(entry, f"{self.model_dir / METADATA_FILE} ({ONNX_KEY}.{what})")
                det = OnnxDetector(where, record, pad_to_stride=self.pad_to_stride, threads=threads)
            except (FileNotFoundError, ValueError) as exc:
                raise ModelError(f"model {self.model_dir}: {exc}") from exc
            if record.num_classes != len(classes):
                raise ModelError(
                    f"model {where}: the ONNX network has {record.num_classes} classes, expected {classes}"
                )
            return det

        self.detector = load(self.model_dir, exported.get("reader"), spec.CLASSES, "reader")
        self.plate_detector = None
        if "plate_detector" in exported:
            self.plate_detector = load(
                self.model_dir / PLATE_DETECTOR_DIR, exported["plate_detector"], spec.PLATE_LABELS, "plate_detector"
            )
        self.crop_geometry = (
            crop_geometry(self.detector.record.crop_geometry) if self.detector.record.crop_geometry else ZOOM_GEOMETRY
        )

    @property
    def input_size(self) -> int:
        """The detector's input (long side after the test pipeline's ``Resize``), pixels."""
        return self.detector.input_size

    @property
    def plate_input_size(self) -> int | None:
        """The plate detector's input (long side), pixels; None without a plate detector."""
        return None if self.plate_detector is None else self.plate_detector.input_size

    @property
    def two_stage(self) -> bool:
        """Whether plates are found by a separate plate detector and all read from zoomed crops."""
        return self.plate_detector is not None

    def _run(
        self,
        images_bgr: Sequence[np.ndarray],
        size: int = 0,
        detector=None,
        *,
        batched: bool = False,
        clock: StageClock | None = None,
    ):
        """Run ``detector`` (default: the reader) on ``images_bgr``; per image ``(bboxes, labels, scores)``
        (``TorchDetector.run`` / ``OnnxDetector.run``; none for none)."""
        return (self.detector if detector is None else detector).run(
            list(images_bgr), size, batched=batched, clock=clock
        )

    def _find_plates(self, images_bgr: Sequence[np.ndarray], clock: StageClock | None = None) -> list[Detections]:
        """The plate detector's plates (:func:`suppress_overlapping_plates` applied), labels mapped to
        :data:`alpr.spec.CLASSES` indices."""
        plate_ids = np.array([spec.class_id(label) for label in spec.PLATE_LABELS])
        out = []
        for boxes, labels, scores in self._run(images_bgr, 0, self.plate_detector, clock=clock):
            keep = suppress_overlapping_plates(boxes, scores)
            out.append((boxes[keep], plate_ids[labels[keep].astype(int)], scores[keep]))
        return out

    def detect(
        self,
        images_bgr: Sequence[np.ndarray],
        zoom_below_px: int | None = None,
        zoom_input_px: int | None = None,
        *,
        clock: StageClock | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run the detector on each image; re-read small plates from zoomed crops.

        A plate found with ``score >= plate_score_thr`` whose box is narrower than ``zoom_below_px`` pixels at the
        detector's input (the image resized to :attr:`input_size` on its long side) is cut out with margins
        (:func:`alpr.model.crops.zoom_crop`) and run through the detector
        again, where its characters get several times more pixels; the characters found in the crop whose
        centres lie in the plate's box replace those of the first pass there. This is the plate-then-characters
        two-stage design of classic ALPR done with the one detector, and only where the plate is small.

        With a plate detector (:attr:`two_stage`, :data:`PLATE_DETECTOR_DIR`), the first pass is the plate detector
        over the whole image at its own input (:attr:`plate_input_size`) and *every* plate it finds is read from
        its zoomed crop, whatever ``zoom_below_px``.

        Args:
            images_bgr: HxWx3 uint8 arrays in BGR order (OpenCV's), any size.
            zoom_below_px: override this reader's :attr:`zoom_below_px` (0: no second pass).
            zoom_input_px: override this reader's :attr:`zoom_input_px` (the crops' detector input; 0: the model's).
            clock: gets the seconds of the first pass's stages and of the zoomed pass
                (:mod:`alpr.model.stages`); None: not timed.

        Returns:
            Per image ``(bboxes (N, 4) float x1 y1 x2 y2 in that image's pixels, labels (N,) int class indices,
            scores (N,) float)``, before any reading threshold (the config's ``test_cfg.score_thr`` applies).
        """
        zoom = self.zoom_below_px if zoom_below_px is None else int(zoom_below_px)
        return self.detect_zoom_choices(images_bgr, (zoom,), zoom_input_px, clock=clock)[zoom]

    def detect_zoom_choices(
        self,
        images_bgr: Sequence[np.ndarray],
        zoom_choices: Sequence[int],
        zoom_input_px: int | None = None,
        *,
        clock: StageClock | None = None,
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
        if self.two_stage:
            # Plates from the plate detector at its own input; every plate is read from its zoomed crop.
            first = self._find_plates(images, clock)
            widest, sizes = math.inf, [self.plate_input_size] * len(images)
        else:
            first = self._run(images, clock=clock)
            widest, sizes = max(choices), [self.input_size] * len(images)
        with timed(clock, ZOOM):
            crops, where = [], []
            if widest > 0:
                for i, (img, dets, size) in enumerate(zip(images, first, sizes)):
                    scale = size / max(img.shape[:2])
                    for plate_box, (cx0, cy0, cx1, cy1) in zoom_regions(
                        img.shape[:2], dets, size, widest, self.thresholds["plate_score_thr"], self.crop_geometry
                    ):
                        crops.append(np.ascontiguousarray(img[cy0:cy1, cx0:cx1]))
                        where.append((i, plate_box, (cx0, cy0), (plate_box[2] - plate_box[0]) * scale))
            crop_size = self.zoom_input_px if zoom_input_px is None else int(zoom_input_px)
            crop_dets = self._run(crops, crop_size, batched=self.batch_crops)
            out: dict[int, list[Detections]] = {}
            for zoom in choices:
                merged = list(first)
                for (i, plate_box, offset, width), dets in zip(where, crop_dets):
                    if self.two_stage or width < zoom:
                        merged[i] = merge_zoomed(merged[i], plate_box, offset, dets)
                out[zoom] = merged
        return out

    def read(self, images_bgr: Sequence[np.ndarray], *, clock: StageClock | None = None) -> list[dict]:
        """Read the plates of each image.

        Args:
            images_bgr: HxWx3 uint8 arrays in BGR order (OpenCV's), any size.
            clock: gets the seconds of each stage (:mod:`alpr.model.stages`: the first pass's pre-processing,
                network and decoding, the zoomed pass, the reading rules); None: not timed.

        Returns:
            One PLATE_SPEC reading per image, boxes in that image's pixels.
        """
        detections = self.detect(images_bgr, clock=clock)
        with timed(clock, READING):
            return [read_arrays(b, labels, s, **self.thresholds) for b, labels, s in detections]

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


def model_thresholds(metadata: dict) -> dict[str, float]:
    """The reading thresholds of a model directory: those its ``model.json`` (``metadata``) chose on val over
    :data:`DEFAULT_THRESHOLDS` (``plate_score_thr``, ``char_score_thr``, ``min_characters``): keyword arguments of
    :func:`alpr.model.reading.read_arrays`."""
    return {**DEFAULT_THRESHOLDS, **metadata.get("thresholds", {})}


#: Two plate boxes overlapping this much (IoU), or one covering this share of the smaller one, are one plate:
#: plates do not overlap in a frame, and every box the plate detector keeps costs a crop read.
PLATE_NMS_IOU = 0.3
PLATE_CONTAINMENT = 0.7


def suppress_overlapping_plates(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Greedy non-maximum suppression of plate boxes by IoU (:data:`PLATE_NMS_IOU`) or containment
    (:data:`PLATE_CONTAINMENT`: intersection over the smaller box), whatever their layouts.

    Args:
        boxes: ``(N, 4)`` x1 y1 x2 y2 pixels.
        scores: ``(N,)``.

    Returns:
        the indices kept, by descending score (NaN scores last).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if kept:
            k = np.array(kept)
            iw = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            ih = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = iw * ih
            union = areas[k] + areas[i] - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            smaller = np.minimum(areas[k], areas[i])
            cover = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
            if np.any((iou >= PLATE_NMS_IOU) | (cover >= PLATE_CONTAINMENT)):
                continue
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def _check_classes(classes: tuple[str, ...], expected: tuple[str, ...], where: Path) -> None:
    """Raise ModelError unless a checkpoint's ``classes`` (its ``dataset_meta``) are ``expected``."""
    if tuple(classes) != expected:
        raise ModelError(f"model {where} predicts classes {classes}, expected {expected}")


def trained_crop_geometry(cfg) -> CropGeometry:
    """The crop geometry a reader was trained for: that of the ``PlateZoomCrop`` step in the training pipeline of
    its (merged) mmengine config ``cfg``, else :data:`alpr.model.crops.ZOOM_GEOMETRY` (a detector trained on whole
    frames, whose zoom pass crops like them).

    Raises:
        ValueError: the config names an unknown geometry.
    """
    return crop_geometry(trained_crop_geometry_name(cfg))


def trained_crop_geometry_name(cfg) -> str:
    """The name (:data:`alpr.model.crops.GEOMETRIES`) of :func:`trained_crop_geometry`: the ``geometry`` of the
    training pipeline's ``PlateZoomCrop`` step, else ``"zoom"``."""
    pipeline = cfg.get("train_dataloader", {}).get("dataset", {}).get("pipeline", []) if cfg else []
    for step in pipeline:
        if step.get("type") == "PlateZoomCrop":
            return str(step.get("geometry", "zoom"))
    return "zoom"


def zoom_regions(
    image_hw: tuple[int, int],
    dets: Detections,
    input_size: int,
    zoom_below_px: int,
    plate_score_thr: float,
    geometry: CropGeometry = ZOOM_GEOMETRY,
) -> list[tuple[tuple[float, float, float, float], tuple[int, int, int, int]]]:
    """The plates of one image to read again from a zoomed crop, and their crops (:func:`alpr.model.crops.zoom_crop`).

    Args:
        image_hw: the image's ``(height, width)``, pixels.
        dets: the image's detections ``(bboxes (N, 4), labels (N,), scores (N,))``.
        input_size: the detector's input long side, pixels.
        zoom_below_px: zoom plates narrower than this at the detector's input.
        plate_score_thr: only plates scored at least this.
        geometry: the crops' geometry (the reader's, :func:`trained_crop_geometry`).

    Returns:
        ``[(plate box (x1, y1, x2, y2), crop (x0, y0, x1, y1) integer pixels inside the image), ...]``; empty
        boxes and crops under :data:`alpr.model.crops.MIN_CROP_PX` either way are skipped.
    """
    h_img, w_img = image_hw
    boxes, labels, scores = dets
    scale = input_size / max(h_img, w_img)
    plate_ids = [spec.class_id(label) for label in spec.PLATE_LABELS]
    out = []
    for k in np.flatnonzero(np.isin(labels, plate_ids) & (scores >= plate_score_thr)):
        box = tuple(float(v) for v in boxes[k])
        if (box[2] - box[0]) * scale >= zoom_below_px:
            continue
        crop = zoom_crop(box, (h_img, w_img), geometry=geometry)
        if crop is not None:
            out.append((box, crop))
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


def write_model_dir(
    out_dir: Path,
    config_path: Path,
    checkpoint: Path,
    metadata: dict,
    plate_detector: tuple[Path, Path] | None = None,
) -> Path:
    """Assemble a model directory from a trained config and checkpoint; returns ``out_dir``.

    The checkpoint is reduced to its weights and plain metadata (no optimizer state, no pickled objects), so
    the served model loads with ``torch.load(weights_only=True)`` and is about a third of the size.

    Args:
        out_dir: the model directory to write (created if missing).
        config_path, checkpoint: the reader's merged config and checkpoint (predicting :data:`alpr.spec.CLASSES`).
        metadata: merged into ``model.json``.
        plate_detector: ``(config, checkpoint)`` of a plate detector (predicting :data:`alpr.spec.PLATE_LABELS`),
            written to :data:`PLATE_DETECTOR_DIR` the same way: the model then reads in two stages.
    """
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, out_dir / CONFIG_FILE)
    _save_weights(checkpoint, out_dir / CHECKPOINT_FILE, spec.CLASSES)
    plate_dir = out_dir / PLATE_DETECTOR_DIR
    if plate_detector is not None:
        plate_dir.mkdir(exist_ok=True)
        shutil.copyfile(plate_detector[0], plate_dir / CONFIG_FILE)
        _save_weights(plate_detector[1], plate_dir / CHECKPOINT_FILE, spec.PLATE_LABELS)
    elif plate_dir.exists():
        shutil.rmtree(plate_dir)
    for stage_dir in (out_dir, plate_dir):  # an earlier export of either network; export_onnx writes new ones
        (stage_dir / ONNX_FILE).unlink(missing_ok=True)
    meta = {"classes": list(spec.CLASSES), "thresholds": dict(DEFAULT_THRESHOLDS), **metadata}
    meta["two_stage"] = plate_detector is not None
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out_dir


def export_onnx(model_dir: Path) -> dict[str, dict]:
    """Export a model directory's networks for the ONNX Runtime back end of :class:`PlateReader`.

    Writes ``model.onnx`` beside ``model.pth`` (and in :data:`PLATE_DETECTOR_DIR` for a two-stage model) with
    :func:`alpr.model.onnx_detector.export` at each network's own input size, and records them in ``model.json``
    under :data:`ONNX_KEY` (opset, input and output names, SHA-256, the test settings the decoding needs, the
    reader's crop geometry). Loads the PyTorch model, so it executes ``config.py``: only for model directories
    this project wrote (Evaluate calls it on the selected model).

    Returns:
        The record written: ``{"reader": {...}, "plate_detector": {...}}`` (the second for two-stage models only).

    Raises:
        ModelError: the directory lacks ``config.py``, ``model.pth`` or ``model.json``.
    """
    model_dir = Path(model_dir)
    meta_path = model_dir / METADATA_FILE
    if not meta_path.is_file():
        raise ModelError(f"model {model_dir}: no {METADATA_FILE}")
    meta = json.loads(meta_path.read_text())
    record: dict[str, dict] = {}
    stages = [("reader", model_dir)]
    if (model_dir / PLATE_DETECTOR_DIR / CONFIG_FILE).is_file():
        stages.append(("plate_detector", model_dir / PLATE_DETECTOR_DIR))
    for name, where in stages:
        try:
            det = TorchDetector(where / CONFIG_FILE, where / CHECKPOINT_FILE)
        except FileNotFoundError as exc:
            raise ModelError(f"model {model_dir}: {exc}") from exc
        geometry = trained_crop_geometry_name(det.cfg) if name == "reader" else ""
        rec = export(det.model, where / ONNX_FILE, input_size=det.input_size, crop_geometry=geometry)
        record[name] = rec.to_json()
        log.info("exported %s to %s (opset %d, sha256 %s)", name, where / ONNX_FILE, rec.opset, rec.sha256[:12])
    meta[ONNX_KEY] = record
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return record


def _save_weights(checkpoint: Path, dest: Path, classes: tuple[str, ...]) -> None:
    """Write ``checkpoint``'s weights and plain-typed metadata (``classes`` as its ``dataset_meta``) to ``dest``:
    it loads with ``torch.load(weights_only=True)``, no pickled objects."""
    import torch

    with trusted_checkpoint_loading():
        ckpt = torch.load(str(checkpoint), map_location="cpu")
    trained = ckpt.get("meta", {})
    slim_meta = {
        "dataset_meta": {"classes": list(classes)},
        "epoch": int(trained.get("epoch", 0) or 0),
        "iter": int(trained.get("iter", 0) or 0),
        "mmdet_version": str(trained.get("mmdet_version", "")),
    }
    torch.save({"meta": slim_meta, "state_dict": ckpt["state_dict"]}, str(dest))
