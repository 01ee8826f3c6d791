"""Reading plates with a trained model: mmdetection inference + :mod:`alpr.reading`.

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

from alpr import spec
from alpr.reading import read_arrays

log = logging.getLogger(__name__)

CONFIG_FILE = "config.py"
CHECKPOINT_FILE = "model.pth"
METADATA_FILE = "model.json"
#: Default reading thresholds (plate and character scores), overridable per model in model.json.
DEFAULT_THRESHOLDS = {"plate_score_thr": 0.3, "char_score_thr": 0.3}


class ModelError(RuntimeError):
    """A model directory is missing a file or cannot be loaded; the message names the path."""


def resolve_model_uri(uri: str, *, db_url: str | None = None) -> str:
    """Map ``latest`` to the latest selected model's storage URI in the metadata store; other URIs unchanged.

    Raises:
        ModelError: ``latest`` was asked for and no model has been selected yet.
    """
    if uri != "latest":
        return uri
    from alpr.metadata import MetadataStore
    from alpr.settings import load_settings

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
    from alpr import storage

    local = Path(storage.fetch(uri, Path(cache_dir)))
    for name in (CONFIG_FILE, CHECKPOINT_FILE):
        if not (local / name).is_file():
            raise ModelError(f"model {uri}: {name} missing (expected {CONFIG_FILE}, {CHECKPOINT_FILE}, {METADATA_FILE})")
    return local


class PlateReader:
    """An mmdetection detector plus the plate reader of PLATE_SPEC.md.

    Args:
        model_dir: local model directory (see module docstring).
        device: torch device string (``"cpu"``, ``"cuda:0"``).
        plate_score_thr, char_score_thr: override the model's reading thresholds.

    Raises:
        ModelError: files missing or the checkpoint does not load.
    """

    def __init__(self, model_dir: Path, device: str = "cpu", *, plate_score_thr: float | None = None,
                 char_score_thr: float | None = None) -> None:
        from mmdet.apis import init_detector

        import alpr.mmdet_plugins  # noqa: F401  (registers PlateReadingMetric named by the config)

        self.model_dir = Path(model_dir)
        meta_path = self.model_dir / METADATA_FILE
        self.metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        thresholds = {**DEFAULT_THRESHOLDS, **self.metadata.get("thresholds", {})}
        if plate_score_thr is not None:
            thresholds["plate_score_thr"] = plate_score_thr
        if char_score_thr is not None:
            thresholds["char_score_thr"] = char_score_thr
        self.thresholds = thresholds
        try:
            self.model = init_detector(str(self.model_dir / CONFIG_FILE), str(self.model_dir / CHECKPOINT_FILE),
                                       device=device)
        except FileNotFoundError as exc:
            raise ModelError(f"model {self.model_dir}: {exc}") from exc
        classes = tuple(self.model.dataset_meta.get("classes", spec.CLASSES)) if self.model.dataset_meta else spec.CLASSES
        if classes != spec.CLASSES:
            raise ModelError(f"model {self.model_dir} predicts classes {classes}, expected {spec.CLASSES}")

    def read(self, images_bgr: Sequence[np.ndarray]) -> list[dict]:
        """Read the plates of each image.

        Args:
            images_bgr: HxWx3 uint8 arrays in BGR order (OpenCV's), any size.

        Returns:
            One PLATE_SPEC reading per image, boxes in that image's pixels.
        """
        from mmdet.apis import inference_detector

        if not images_bgr:
            return []
        results = inference_detector(self.model, list(images_bgr))
        readings = []
        for res in results:
            pred = res.pred_instances
            readings.append(read_arrays(pred.bboxes.cpu().numpy().reshape(-1, 4), pred.labels.cpu().numpy(),
                                        pred.scores.cpu().numpy(), **self.thresholds))
        return readings

    def read_files(self, paths: Sequence[Path], batch_size: int = 4) -> list[dict]:
        """Decode image files (any format OpenCV reads) and read them in batches.

        Raises:
            ValueError: a file cannot be decoded as an image (the message names it).
        """
        import cv2

        out: list[dict] = []
        for i in range(0, len(paths), batch_size):
            batch = []
            for p in paths[i:i + batch_size]:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError(f"{p}: not a decodable image")
                batch.append(img)
            out.extend(self.read(batch))
        return out


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
    from alpr.training import trusted_checkpoint_loading

    with trusted_checkpoint_loading():
        ckpt = torch.load(str(checkpoint), map_location="cpu")
    # Weights plus plain-typed metadata only: loads with torch.load(weights_only=True), no pickled objects.
    trained = ckpt.get("meta", {})
    slim_meta = {"dataset_meta": {"classes": list(spec.CLASSES)}, "epoch": int(trained.get("epoch", 0) or 0),
                 "iter": int(trained.get("iter", 0) or 0), "mmdet_version": str(trained.get("mmdet_version", ""))}
    slim = {"meta": slim_meta, "state_dict": ckpt["state_dict"]}
    torch.save(slim, str(out_dir / CHECKPOINT_FILE))
    meta = {"classes": list(spec.CLASSES), "thresholds": DEFAULT_THRESHOLDS, **metadata}
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out_dir
