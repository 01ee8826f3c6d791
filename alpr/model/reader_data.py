"""The two-stage reader's training data: one small image per readable plate, cut from a COCO training version.

The reader of the two-stage design (docs/detection_design.md) only ever sees a plate's crop (its crop geometry:
:data:`alpr.model.crops.READER_GEOMETRY` or :data:`~alpr.model.crops.ZOOM_GEOMETRY`), never a whole frame. Training
it on whole road frames (1-4 plates, up to 1920x1080) spends most of each iteration decoding pixels it throws away
and shows it one plate per frame per epoch. :func:`write_reader_dataset` cuts every readable plate out of a
training version once:

- **train**: a *context crop* around each plate (:func:`context_geometry`: at least :data:`CONTEXT_MARGIN_X` of the
  plate's width left and right, :data:`CONTEXT_HEIGHT_FACTOR` plate heights high), wider than any crop the training
  transform ``PlateZoomCrop`` (``central=True``, the reader's geometry with jitter) then draws from it, so every
  epoch still sees new margins;
- **val**: the crop the reader is given at inference for a perfectly found plate (the reader's geometry, no
  jitter), so the in-training validation (COCO mAP, EIR) measures what the reader does in the two-stage model.

Crops are shrunk (never enlarged) so their long side is at most ``max_side`` pixels (twice the reader's input by
default), which keeps them sharper than the reader's input after any training resize. Boxes are moved, clipped and
scaled with the crop; a box that keeps less than :data:`MIN_VISIBLE` of its area inside is dropped. Each val crop
carries its ground-truth plates (those wholly inside the crop) as ``plates`` for
:class:`alpr.model.plugins.PlateReadingMetric`.

Plates narrower than :data:`MIN_READ_PLATE_PX` in their frame are left out: at 3 % of a 640-pixel frame a plate
is 19 pixels wide and its characters 2 pixels, which no crop makes readable; a 40-pixel plate's characters are
3-4 pixels wide, the least from which a reading can be learnt rather than guessed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alpr import spec
from alpr.model.crops import HEIGHT_JITTER, MARGIN_JITTER, READER_GEOMETRY, SHIFT_JITTER, CropGeometry, zoom_crop

log = logging.getLogger(__name__)

#: Margin left and right of the plate in a train context crop, fraction of the plate's width, at least: more than the
#: reader geometry's largest jittered margin plus shift (``PlateZoomCrop``), so the transform's crop fits inside
#: (:func:`context_geometry` widens it for wider geometries).
CONTEXT_MARGIN_X: Final = 0.7
#: A train context crop is at least this many plate heights high (:func:`context_geometry`).
CONTEXT_HEIGHT_FACTOR: Final = 3.5
#: Added to a geometry's largest jittered margin (fraction of the plate's width) in :func:`context_geometry`.
CONTEXT_SLACK_X: Final = 0.1
#: Plates narrower than this in their frame (pixels) are not cut out. Was 24 (as ``PlateZoomCrop``'s
#: ``min_plate_px``) until the third two-stage run (docs/detection_design.md).
MIN_READ_PLATE_PX: Final = 40.0
#: A clipped box must keep this share of its area to be kept (as ``PlateZoomCrop``'s ``min_visible``).
MIN_VISIBLE: Final = 0.6
#: JPEG quality of the stored crops (high: the frames' own compression is the degradation to learn).
JPEG_QUALITY: Final = 95


@dataclass(frozen=True)
class ReaderDataset:
    """What :func:`write_reader_dataset` wrote.

    Attributes:
        root: the dataset folder (``annotations/{train,val}.json``, ``images/``), a COCO training version as
            :func:`alpr.model.training.build_config` expects.
        crops: crops written per split, e.g. ``{"train": 4100, "val": 450}``.
        skipped: plates left out per split (narrower than ``min_plate_px`` or no crop inside the frame).
    """

    root: Path
    crops: dict[str, int]
    skipped: dict[str, int]


def _crop_annotations(
    anns: list[dict], crop: tuple[int, int, int, int], scale: float, min_visible: float
) -> list[tuple[list[float], int]]:
    """The annotations that keep at least ``min_visible`` of their area inside ``crop``, as ``(xyxy clipped to the
    crop, in its scaled pixels, category_id)``."""
    x0, y0, x1, y1 = crop
    out = []
    for ann in anns:
        bx, by, bw, bh = ann["bbox"]
        if bw <= 0 or bh <= 0:
            continue
        cx1, cy1 = max(bx, x0), max(by, y0)
        cx2, cy2 = min(bx + bw, x1), min(by + bh, y1)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        visible = (cx2 - cx1) * (cy2 - cy1) / (bw * bh)
        if visible < min_visible:
            continue
        box = [(cx1 - x0) * scale, (cy1 - y0) * scale, (cx2 - x0) * scale, (cy2 - y0) * scale]
        out.append((box, int(ann["category_id"])))
    return out


def _plates_inside(plates: list[dict], crop: tuple[int, int, int, int], scale: float) -> list[dict]:
    """The ground-truth plates (PLATE_SPEC records of the COCO image) wholly inside ``crop``, in scaled crop
    pixels."""
    x0, y0, x1, y1 = crop
    out = []
    for plate in plates:
        bx1, by1, bx2, by2 = plate["box"]
        if bx1 >= x0 and by1 >= y0 and bx2 <= x1 and by2 <= y1:
            moved = dict(plate)
            moved["box"] = [(bx1 - x0) * scale, (by1 - y0) * scale, (bx2 - x0) * scale, (by2 - y0) * scale]
            if "points" in plate:
                moved["points"] = [[(px - x0) * scale, (py - y0) * scale] for px, py in plate["points"]]
            out.append(moved)
    return out


def context_geometry(geometry: CropGeometry) -> CropGeometry:
    """The train context crop for a reader of crop ``geometry``: wide and high enough that every crop
    ``PlateZoomCrop`` draws with its default jitter (:data:`alpr.model.crops.MARGIN_JITTER`, ``HEIGHT_JITTER``,
    ``SHIFT_JITTER``) fits inside, and never smaller than :data:`CONTEXT_MARGIN_X` x :data:`CONTEXT_HEIGHT_FACTOR`
    (the reader geometry's context, unchanged). For :data:`alpr.model.crops.ZOOM_GEOMETRY`: margin 0.88, 3.9 plate
    heights high.
    """
    margin = MARGIN_JITTER[1] * geometry.margin_x + SHIFT_JITTER + CONTEXT_SLACK_X
    height = HEIGHT_JITTER[1] * geometry.height_factor
    return CropGeometry(
        max(CONTEXT_MARGIN_X, round(margin, 6)), max(CONTEXT_HEIGHT_FACTOR, round(height, 6)), geometry.min_aspect
    )


def write_reader_dataset(
    data_root: Path,
    out_dir: Path,
    *,
    max_side: int,
    geometry: CropGeometry = READER_GEOMETRY,
    min_plate_px: float = MIN_READ_PLATE_PX,
    splits: tuple[str, ...] = ("train", "val"),
) -> ReaderDataset:
    """Cut the readable plates of a COCO training version into a reader dataset (see the module docstring).

    Args:
        data_root: a COCO training version (``annotations/<split>.json`` written by :mod:`alpr.data.coco`, whose
            image records carry ``plates``).
        out_dir: the folder to write; its ``annotations/`` and ``images/`` are replaced.
        max_side: crops are shrunk to at most this long side, pixels (> 0).
        geometry: the reader's crop geometry (the val crops; train context crops are wider: :func:`context_geometry`).
        min_plate_px: plates narrower than this in their frame are left out.
        splits: the splits to cut; ``train`` gets context crops, every other split inference crops.

    Returns:
        :class:`ReaderDataset`.

    Raises:
        ValueError: ``max_side`` not positive; an image that cannot be decoded (named).
        FileNotFoundError: a split's COCO file is missing.
    """
    import cv2

    if max_side <= 0:
        raise ValueError(f"max_side must be > 0, got {max_side!r}")
    data_root, out_dir = Path(data_root), Path(out_dir)
    plate_ids = {spec.class_id(label) + 1 for label in spec.PLATE_LABELS}  # COCO category ids are 1-based
    context = context_geometry(geometry)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    crops: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for split in splits:
        ann_path = data_root / "annotations" / f"{split}.json"
        if not ann_path.is_file():
            raise FileNotFoundError(f"{ann_path} missing: not a training version")
        coco = json.loads(ann_path.read_text(encoding="utf-8"))
        by_image: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        images, annotations = [], []
        n_skipped = 0
        for record in coco["images"]:
            anns = by_image.get(record["id"], [])
            plates = [a for a in anns if a["category_id"] in plate_ids and a["bbox"][2] >= min_plate_px]
            n_skipped += sum(1 for a in anns if a["category_id"] in plate_ids) - len(plates)
            if not plates:
                continue
            path = data_root / record["file_name"]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{path}: not a decodable image (split {split}, image id {record['id']})")
            for k, plate in enumerate(plates):
                bx, by, bw, bh = plate["bbox"]
                crop = zoom_crop(
                    (bx, by, bx + bw, by + bh), img.shape[:2], geometry=context if split == "train" else geometry
                )
                if crop is None:
                    n_skipped += 1
                    continue
                x0, y0, x1, y1 = crop
                scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
                pixels = img[y0:y1, x0:x1]
                if scale < 1.0:
                    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
                    pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
                image_id = len(images) + 1
                name = f"images/{split}_{Path(record['file_name']).stem}_{k}.jpg"
                cv2.imwrite(str(out_dir / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                height, width = pixels.shape[:2]
                entry = {
                    "id": image_id,
                    "file_name": name,
                    "width": width,
                    "height": height,
                    "source": record["file_name"],
                }
                if split != "train":
                    entry["plates"] = _plates_inside(record.get("plates", []), crop, scale)
                images.append(entry)
                for box, category in _crop_annotations(anns, crop, scale, MIN_VISIBLE):
                    w, h = box[2] - box[0], box[3] - box[1]
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": category,
                            "bbox": [round(v, 2) for v in (box[0], box[1], w, h)],
                            "area": round(w * h, 2),
                            "iscrowd": 0,
                        }
                    )
        info = dict(coco.get("info", {}))
        info["description"] = f"two-stage reader crops of {data_root} ({split}), alpr.model.reader_data"
        out = {
            "info": info,
            "licenses": [],
            "categories": coco["categories"],
            "images": images,
            "annotations": annotations,
        }
        (out_dir / "annotations" / f"{split}.json").write_text(json.dumps(out), encoding="utf-8")
        crops[split], skipped[split] = len(images), n_skipped
        log.info("reader data %s: %d crops, %d plates left out", split, len(images), n_skipped)
    return ReaderDataset(out_dir, crops, skipped)
