"""Convert validated labelme files to COCO detection datasets with a deterministic train/val/test split.

COCO object-detection format (https://cocodataset.org/#format-data)::

    {"info": {...}, "licenses": [],
     "categories": [{"id": 1, "name": "0", "supercategory": "character"}, ...],   # alpr.spec.CLASSES order
     "images": [{"id": 1, "file_name": "images/car_001.jpg", "width": 640, "height": 480,
                 "plates": [{"box": [x1, y1, x2, y2], "text": "12A3456", "layout": "one_line",
                             "points": [[x, y], ...]}]}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 17, "bbox": [x, y, w, h], "area": a,
                      "segmentation": [[x1, y1, x2, y2, ...]], "iscrowd": 0}, ...]}

Units are pixels of the original image (x right, y down). ``bbox`` is the shape's axis-aligned bounds as
``[x, y, width, height]``; ``area`` is the polygon's area in px^2 (shoelace; a rectangle's is ``w * h``);
``segmentation`` is the polygon flattened (a rectangle gives its 4 corners). Category ids are the index in
:data:`alpr.spec.CLASSES` plus one. Image and annotation ids start at 1 in each file.

``plates`` is an extra image field (pycocotools and mmdetection ignore it): the ground-truth plates of the image
as PLATE_SPEC.md defines their text, computed by :func:`alpr.model.reading.read_plates` over the annotated shapes, so
ground truth and model readings are ordered by the same code; ``points`` is each plate's outline polygon
(:func:`ground_truth_plates`).

The split (:func:`split_of`) hashes the seed and the image file name: an image's split never depends on which
other images are in the set, so adding images never moves existing ones (renaming an image may).

On disk (:func:`write_coco_dataset`)::

    out_dir/annotations/{train,val,test}.json     file_name = "images/<image file name>", relative to out_dir
    out_dir/images/<image file name>

so an mmdetection dataset uses ``data_root=out_dir``, ``ann_file="annotations/train.json"``,
``data_prefix=dict(img="")``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alpr import spec
from alpr.data.labelme import AnnotationError, LabelmeFile, ground_truth_reading
from alpr.defaults import TRAINING_DEFAULTS

__all__ = [
    "DEFAULT_FRACTIONS",
    "check_fractions",
    "split_of",
    "split_assignment",
    "split_counts",
    "categories",
    "to_coco",
    "build_splits",
    "write_json_atomic",
    "write_coco_dataset",
]

#: Train/val/test fractions of the pipeline's embedded defaults.
DEFAULT_FRACTIONS: tuple[float, float, float] = TRAINING_DEFAULTS.split_fractions
_FRACTION_TOLERANCE = 1e-6
_POINT_DECIMALS = 2  # ground-truth plate outlines, as alpr.model.reading rounds boxes
# os.link failures that mean "can't hard-link here" (another filesystem, not permitted, not supported): copy.
_NO_LINK_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate split fractions ``(train, val, test)``: three finite numbers >= 0 summing to 1 (within 1e-6),
    train > 0.

    Returns:
        the fractions as a tuple of floats.

    Raises:
        ValueError: naming the offending value.
    """
    try:
        values = tuple(fractions)
    except TypeError:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}") from None
    if len(values) != 3:
        raise ValueError(f"fractions must be 3 numbers (train, val, test), got {fractions!r}")
    out = []
    for name, v in zip(spec.SPLITS, values, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"fraction {name}={v!r} is not a finite number (fractions {fractions!r})")
        if v < 0:
            raise ValueError(f"fraction {name}={v!r} is negative (fractions {fractions!r})")
        out.append(float(v))
    total = math.fsum(out)
    if abs(total - 1.0) > _FRACTION_TOLERANCE:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {total!r})")
    if out[0] <= 0:
        raise ValueError(f"fraction train={values[0]!r} must be > 0 (fractions {fractions!r})")
    return out[0], out[1], out[2]


def _unit_hash(file_name: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{file_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)


def split_of(file_name: str, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """Return the split (``"train"``, ``"val"`` or ``"test"``) of one image, deterministically.

    ``u`` = the first 8 bytes of ``sha256(f"{seed}:{file_name}")`` as a number in [0, 1); the image is in train
    when ``u < train``, val when ``u < train + val``, else test. A split with fraction 0 never gets an image.

    Args:
        file_name: the image's file name (its identity for the split).
        seed: the split seed (part of the training version's parameters).
        fractions: ``(train, val, test)``, see :func:`check_fractions`.

    Raises:
        ValueError: invalid fractions.
    """
    fr = check_fractions(fractions)
    u = _unit_hash(file_name, seed)
    acc = 0.0
    for name, f in zip(spec.SPLITS, fr, strict=True):
        acc += f
        if f > 0 and u < acc:
            return name
    # u in [acc, 1) only through float rounding of the sum: the last split that may hold images.
    return next(name for name, f in zip(reversed(spec.SPLITS), reversed(fr), strict=True) if f > 0)


def _image_name(lf: LabelmeFile) -> str:
    return lf.image_path.name


def _check_unique_names(files: Sequence[LabelmeFile]) -> None:
    seen: dict[str, Path] = {}
    for lf in files:
        name = _image_name(lf)
        if name in seen:
            raise AnnotationError(lf.path, f"image file name {name!r} is also used by {seen[name]}")
        seen[name] = lf.path


def split_assignment(
    files: Sequence[LabelmeFile], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Return ``{image file name: split}`` for ``files``, in their order (see :func:`split_of`)."""
    check_fractions(fractions)
    return {_image_name(lf): split_of(_image_name(lf), seed, fractions) for lf in files}


def _partition(files: Sequence[LabelmeFile], seed: int, fractions: Sequence[float]) -> dict[str, list[LabelmeFile]]:
    check_fractions(fractions)
    parts: dict[str, list[LabelmeFile]] = {s: [] for s in spec.SPLITS}
    for lf in files:
        parts[split_of(_image_name(lf), seed, fractions)].append(lf)
    return parts


def _class_table(counter: Counter) -> dict[str, int]:
    return {c: int(counter.get(c, 0)) for c in spec.CLASSES}


def split_counts(
    files: Sequence[LabelmeFile], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, dict[str, Any]]:
    """Return per split ``{"images": n, "instances": n, "classes": {class: n for every class}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, part in _partition(files, seed, fractions).items():
        counter: Counter = Counter()
        for lf in part:
            counter.update(lf.class_counts())
        out[name] = {"images": len(part), "instances": sum(counter.values()), "classes": _class_table(counter)}
    return out


def categories() -> list[dict[str, Any]]:
    """Return the COCO categories: ``id`` = index in :data:`alpr.spec.CLASSES` + 1, supercategory ``"plate"`` or
    ``"character"``."""
    return [
        {"id": i + 1, "name": c, "supercategory": "plate" if spec.is_plate(c) else "character"}
        for i, c in enumerate(spec.CLASSES)
    ]


def ground_truth_plates(lf: LabelmeFile) -> list[dict[str, Any]]:
    """The annotated plates of one labelme file: ``[{"box": [x1, y1, x2, y2], "text", "layout", "points": [[x, y],
    ...]}, ...]`` (pixels), in file order, texts in PLATE_SPEC reading order, as
    :func:`alpr.data.labelme.ground_truth_reading` reads them (the same reading the labelme validation checks against
    the plate contract). ``points`` is the plate's outline (:meth:`alpr.data.labelme.Shape.polygon`: a rectangle's 4
    corners), rounded to 2 decimals like ``box``; :mod:`alpr.model.breakdown` estimates the plate's angle from it."""
    reading = ground_truth_reading(lf.shapes)
    # read_plates keeps the plate outlines in file order (all scores 1.0, ties in input order).
    return [
        {
            "box": p["box"],
            "text": p["text"],
            "layout": p["layout"],
            "points": [[round(float(x), _POINT_DECIMALS), round(float(y), _POINT_DECIMALS)] for x, y in s.polygon()],
        }
        for s, p in zip(lf.plates(), reading["plates"], strict=True)
    ]


def to_coco(files: Sequence[LabelmeFile], image_prefix: str = "images/") -> dict[str, Any]:
    """Build one COCO detection dict from validated labelme files (see the module docstring for the format).

    Args:
        files: the images, in the order their ids are given (1, 2, ...).
        image_prefix: prepended to each image's file name to form ``file_name``.

    Returns:
        the COCO dict, JSON-serialisable.

    Raises:
        AnnotationError: two files annotate images with the same file name.
    """
    _check_unique_names(files)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, lf in enumerate(files, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": f"{image_prefix}{_image_name(lf)}",
                "width": lf.width,
                "height": lf.height,
                "plates": ground_truth_plates(lf),
            }
        )
        for s in lf.shapes:
            x1, y1, x2, y2 = s.bounds()
            poly = s.polygon()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": spec.class_id(s.label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": s.area(),
                    "segmentation": [[c for p in poly for c in p]],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "ALPR license plates, converted from labelme by alpr.data.coco",
            "version": "1.0",
            "classes": list(spec.CLASSES),
        },
        "licenses": [],
        "categories": categories(),
        "images": images,
        "annotations": annotations,
    }


def build_splits(
    files: Sequence[LabelmeFile],
    seed: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    image_prefix: str = "images/",
) -> dict[str, dict[str, Any]]:
    """Return ``{"train": coco, "val": coco, "test": coco}`` (see :func:`split_of`, :func:`to_coco`); each split
    keeps the files' order. A split may be empty (no images).

    Raises:
        ValueError: invalid fractions. AnnotationError: duplicate image file names.
    """
    _check_unique_names(files)
    return {name: to_coco(part, image_prefix) for name, part in _partition(files, seed, fractions).items()}


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    Readers see the old file or the new one, never a partial one; on any error the temporary file is removed and
    ``path`` is untouched. NaN/Infinity are refused (strict JSON).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _place_image(src: Path, dst: Path, copy: bool) -> str:
    """Put ``src`` at ``dst`` by hard link (same filesystem) or copy; return ``"linked"``, ``"copied"`` or
    ``"present"``. Goes through a temporary name and ``os.replace``: an existing ``dst`` (maybe a hard link to
    some other file) is replaced, never written through."""
    if dst.exists() and os.path.samefile(src, dst):
        return "present"
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    if tmp.exists():
        tmp.unlink()
    how = "copied"
    try:
        if not copy:
            try:
                os.link(src, tmp)
                how = "linked"
            except OSError as e:
                if e.errno not in _NO_LINK_ERRNOS:
                    raise
        if how == "copied":
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return how


def write_coco_dataset(
    files: Sequence[LabelmeFile],
    out_dir: Path,
    seed: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    copy_images: bool = True,
    link_images: bool = True,
) -> dict[str, Any]:
    """Write a COCO dataset: ``out_dir/annotations/{train,val,test}.json`` and the images in ``out_dir/images/``.

    Args:
        files: validated labelme files (e.g. :attr:`alpr.data.labelme.FolderReport.files`).
        out_dir: the dataset folder (created). Re-running with the same files is idempotent.
        seed, fractions: the split (see :func:`split_of`).
        copy_images: place the images under ``out_dir/images/``; ``False`` writes the annotations only.
        link_images: hard-link images when on the same filesystem (falling back to a copy); ``False`` always
            copies.

    Returns:
        a JSON-serialisable summary: ``seed``, ``fractions``, ``images`` (total), ``classes`` (instances per
        class, all splits), ``dropped`` (legacy labels dropped), ``splits`` (per split: ``images``,
        ``instances``, ``classes``, ``plates``, ``invalid_plates`` (ground-truth text not matching the canonical
        pattern), ``characters_outside_plates`` (character shapes whose centre is in no plate outline)),
        ``images_linked`` / ``images_copied`` / ``images_present``, and ``annotation_files`` (paths relative to
        ``out_dir``).

    Raises:
        ValueError: invalid fractions.
        AnnotationError: two files annotate images with the same file name (nothing is written).
        FileExistsError: ``out_dir/images`` or ``out_dir/annotations`` already holds files this dataset would
            not write (stale data would leak into a versioned dataset; nothing is written).
    """
    fr = check_fractions(fractions)
    _check_unique_names(files)
    out_dir = Path(out_dir)
    ann_dir, img_dir = out_dir / "annotations", out_dir / "images"
    expected_ann = {f"{s}.json" for s in spec.SPLITS}
    expected_img = {_image_name(lf) for lf in files} if copy_images else set()
    for folder, expected in ((ann_dir, expected_ann), (img_dir, expected_img)):
        if folder.is_dir():
            stale = sorted(p.name for p in folder.iterdir() if p.name not in expected)
            if stale:
                more = f" (and {len(stale) - 5} more)" if len(stale) > 5 else ""
                raise FileExistsError(
                    f"{folder} already holds files that are not part of this dataset: {stale[:5]}{more}"
                )

    splits = build_splits(files, seed, fr)
    ann_dir.mkdir(parents=True, exist_ok=True)
    placed: Counter = Counter()
    if copy_images:
        img_dir.mkdir(parents=True, exist_ok=True)
        for lf in files:
            placed[_place_image(lf.image_path, img_dir / _image_name(lf), not link_images)] += 1

    summary_splits: dict[str, Any] = {}
    counts = split_counts(files, seed, fr)
    for name in spec.SPLITS:
        coco = splits[name]
        write_json_atomic(ann_dir / f"{name}.json", coco)
        plates = [p for im in coco["images"] for p in im["plates"]]
        in_plates = sum(len(p["text"]) for p in plates)
        n_chars = sum(v for k, v in counts[name]["classes"].items() if spec.is_character(k))
        summary_splits[name] = {
            **counts[name],
            "plates": len(plates),
            "invalid_plates": sum(not spec.is_valid_text(p["text"]) for p in plates),
            "characters_outside_plates": n_chars - in_plates,
        }

    total: Counter = Counter()
    dropped: Counter = Counter()
    for lf in files:
        total.update(lf.class_counts())
        dropped.update(lf.dropped)
    return {
        "seed": seed,
        "fractions": list(fr),
        "images": len(files),
        "classes": _class_table(total),
        "dropped": dict(sorted(dropped.items())),
        "splits": summary_splits,
        "images_linked": placed["linked"],
        "images_copied": placed["copied"],
        "images_present": placed["present"],
        "annotation_files": {s: f"annotations/{s}.json" for s in spec.SPLITS},
    }
