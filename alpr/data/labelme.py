"""Read, validate and normalise labelme annotation files (``docs/PLATE_SPEC.md`` "Annotations").

One labelme 5.x JSON file annotates one image::

    {"version": "5.4.1", "flags": {}, "imagePath": "car_001.jpg", "imageData": null,
     "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "plate_two_line", "points": [[x, y], ...], "shape_type": "polygon",
                 "group_id": null, "flags": {}}, ...]}

Points are pixel coordinates ``(x, y)`` in the image as labelme shows it (x to the right, y down, origin at the
top-left corner of the top-left pixel, so a point lies in ``[0, width] x [0, height]``).

Labels are normalised to the detector's classes (:data:`alpr.spec.CLASSES`): the original project's names are
mapped (``l_board`` -> ``plate_one_line``, ``r_board`` -> ``plate_two_line``, ``a``..``e`` -> ``A``..``E``,
:data:`alpr.spec.LEGACY_LABELS`) and its text-region shapes (``r_s_n``, ``l_s_n``, ``r_m_n``, ``l_m_n``,
:data:`alpr.spec.DROPPED_LABELS`) are dropped and counted. Any other label is an error.

Policy
------
* Nothing is silent. Every problem is an :class:`AnnotationError` naming the file and the problem precisely
  (``shapes[3]: unknown label 'Z'``); labels and other user text are shown with :func:`repr`, verbatim.
* :func:`load_labelme` raises the first problem of one file. :func:`validate_folder` checks every file and
  collects **every** problem of every file (all shape problems of a file, not just its first) into a
  :class:`FolderReport`.
* One bad file fails the whole annotation version: the Record step refuses a folder whose report is not
  :attr:`FolderReport.ok`, and shows :meth:`FolderReport.format`, which lists every problem file by file, so the
  annotators can fix them all in one round.
* Each plate is checked against the plate contract (PLATE_SPEC "The plate"), the way :mod:`alpr.data.coco` reads
  its ground truth (:func:`alpr.model.reading.read_plates`: a character belongs to the plate whose outline
  contains its centre, read in reading order): exactly :data:`alpr.spec.PLATE_LENGTH` characters whose text
  matches :data:`alpr.spec.PLATE_PATTERN` (a letter ``A``-``E`` at position 3, digits elsewhere). The problem
  names the plate (``shapes[0] ('plate_one_line', box [10, 10, 94, 30]): holds 6 characters ...``). It is checked
  once every shape of the file is well-formed (a broken shape would only make its plate's count wrong too);
  ``check_plates=False`` skips it, for reading annotations whose plates are not complete yet.
* Limits, checked before the work they guard: a file over :data:`MAX_BYTES` is refused before it is read, a file
  with more than :data:`MAX_SHAPES` shapes before its shapes are checked (the message counts the plate outlines
  and characters and names the plates).
* The only silent-looking repairs are documented here and bounded: points up to :data:`POINT_TOLERANCE_PX`
  outside the image are clipped onto its border (further out is an error); dropped legacy shapes are counted in
  :attr:`LabelmeFile.dropped` and the report (their geometry is not checked: they never reach the dataset).
* A JPEG whose EXIF orientation rotates it by 90 degrees is compared with its *displayed* size, which is what
  labelme annotates and records (labelme applies the EXIF orientation on load, as do OpenCV's ``imread`` and
  mmcv's loader); consumers that decode images with Pillow must apply ``ImageOps.exif_transpose``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from alpr import spec
from alpr.model.reading import Detection, read_plates

__all__ = [
    "POINT_TOLERANCE_PX",
    "MAX_BYTES",
    "MAX_SHAPES",
    "SHAPE_TYPES",
    "AnnotationError",
    "Shape",
    "LabelmeFile",
    "FolderReport",
    "normalise_label",
    "load_labelme",
    "validate_folder",
    "normalise_file",
    "ground_truth_reading",
    "polygon_area",
]

#: How far (pixels) a point may lie outside the image before it is an error; within it, points are clipped.
POINT_TOLERANCE_PX: float = 1.0
#: Default limit on a labelme file's size in bytes, checked before the file is read (and again while reading it).
#: Without ``imageData`` even a file of :data:`MAX_SHAPES` shapes stays well under 1 MB; the rest is room for
#: ``imageData``, the base64 copy of the image labelme embeds by default (4/3 of the image file's size): photos up
#: to about 15 MB, more than a 24 MP camera JPEG.
MAX_BYTES: int = 20_000_000
#: Most shapes (kept and dropped) in one file. A plate is 1 outline and :data:`alpr.spec.PLATE_LENGTH` characters,
#: plus up to 2 text-region shapes in the original project's files: 10 shapes; 1000 is room for 100 plates, several
#: times the busiest street or car-park photo. More is a broken export or a hostile file; refusing it before the
#: shapes are checked bounds the work (the plate check costs plates x characters) and the memory one file takes.
MAX_SHAPES: int = 1000
#: How many plate outlines a "too many shapes" message names.
_NAMED_PLATES = 3
#: Accepted ``shape_type`` values.
SHAPE_TYPES: tuple[str, ...] = ("polygon", "rectangle")
#: Keys a labelme file must have.
REQUIRED_KEYS: tuple[str, ...] = ("shapes", "imagePath", "imageHeight", "imageWidth")
#: Polygons whose absolute area (px^2) is at most this are degenerate.
MIN_AREA_PX2: float = 1e-6

# EXIF orientations (tag 0x0112) that rotate the image by 90 or 270 degrees, swapping width and height.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class AnnotationError(ValueError):
    """A problem with one annotation file (or folder).

    Attributes:
        path: the labelme JSON file (or folder) concerned.
        problem: what is wrong, precisely (``"shapes[3]: unknown label 'Z'"``).

    ``str(error)`` is ``f"{path}: {problem}"``.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"

    def __reduce__(self):  # keep path/problem through pickling (multiprocessing, KFP local runner)
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class Shape:
    """One kept (non-dropped) shape of a labelme file, after normalisation.

    Attributes:
        label: the normalised label, one of :data:`alpr.spec.CLASSES`.
        points: pixel ``(x, y)`` points, clipped onto the image: a polygon's vertices (>= 3), or a rectangle's
            two opposite corners, as labelme stores them.
        shape_type: ``"polygon"`` or ``"rectangle"``.
        group_id: labelme's ``group_id`` (``None`` when not set).
        index: the shape's position in the file's original ``shapes`` list (for messages and round trips).
        flags: the shape's labelme ``flags``.
    """

    label: str
    points: tuple[tuple[float, float], ...]
    shape_type: str = "polygon"
    group_id: int | None = None
    index: int = 0
    flags: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def polygon(self) -> tuple[tuple[float, float], ...]:
        """Return the outline as polygon vertices: a rectangle becomes its 4 corners, clockwise on screen from
        the top-left ``(x1, y1), (x2, y1), (x2, y2), (x1, y2)``."""
        if self.shape_type == "rectangle":
            x1, y1, x2, y2 = self.bounds()
            return ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
        return self.points

    def bounds(self) -> tuple[float, float, float, float]:
        """Return the axis-aligned bounds ``(x1, y1, x2, y2)`` in pixels (``x1 <= x2``, ``y1 <= y2``)."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        return (min(xs), min(ys), max(xs), max(ys))

    def area(self) -> float:
        """Return the enclosed area in px^2 (shoelace formula over :meth:`polygon`)."""
        return polygon_area(self.polygon())


@dataclass
class LabelmeFile:
    """A validated labelme file.

    Attributes:
        path: the JSON file.
        image_path: the image file, resolved (it exists, and its size matches ``width`` x ``height``).
        width, height: the image size in pixels (labelme's ``imageWidth`` / ``imageHeight``).
        shapes: the kept shapes, normalised, in file order.
        dropped: how many shapes of each legacy text-region label were dropped.
        raw: the parsed JSON as read, less ``imageData`` (used by :func:`normalise_file` to keep labelme's other
            fields).
    """

    path: Path
    image_path: Path
    width: int
    height: int
    shapes: list[Shape]
    dropped: Counter = field(default_factory=Counter)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def class_counts(self) -> Counter:
        """Return the number of kept shapes per normalised label."""
        return Counter(s.label for s in self.shapes)

    def plates(self) -> list[Shape]:
        """Return the plate outline shapes."""
        return [s for s in self.shapes if spec.is_plate(s.label)]


def normalise_label(label: str) -> str | None:
    """Map a labelme label onto the detector's classes.

    Returns:
        the class name (one of :data:`alpr.spec.CLASSES`), or ``None`` for a legacy text-region label that is
        dropped (:data:`alpr.spec.DROPPED_LABELS`).

    Raises:
        KeyError: any other label (the message shows it with ``repr``).
    """
    if label in spec.CLASSES:
        return label
    if label in spec.LEGACY_LABELS:
        return spec.LEGACY_LABELS[label]
    if label in spec.DROPPED_LABELS:
        return None
    raise KeyError(f"unknown label {label!r}")


def polygon_area(points: Iterable[tuple[float, float]]) -> float:
    """Return the absolute area (px^2) of a simple polygon by the shoelace formula (0 for < 3 points)."""
    pts = list(points)
    if len(pts) < 3:
        return 0.0
    s = 0.0
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
        s += x1 * y2 - x2 * y1
    return abs(s) / 2.0


# --------------------------------------------------------------------------------------------------------------
# checking one file


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


class _Fatal(Exception):
    """A problem after which the rest of the file can't be checked."""


def _read_json(path: Path, max_bytes: int) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _Fatal("file not found") from None
    except OSError as e:
        raise _Fatal(f"cannot stat the file: {e.strerror or e}") from None
    if not path.is_file():
        raise _Fatal("not a regular file")
    if size > max_bytes:
        raise _Fatal(f"file is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)  # bounded: the file may have grown since it was measured
    except OSError as e:
        raise _Fatal(f"cannot read the file: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise _Fatal(f"file grew over the limit of {max_bytes} bytes while being read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _Fatal(f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Fatal(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise _Fatal("invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise _Fatal(f"top level must be a JSON object, got {_type_name(doc)}")
    return doc


def _check_header(doc: dict[str, Any]) -> tuple[list[Any], str, int, int]:
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise _Fatal("missing required key" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing)))
    shapes, image_path, h, w = doc["shapes"], doc["imagePath"], doc["imageHeight"], doc["imageWidth"]
    if not isinstance(shapes, list):
        raise _Fatal(f"'shapes' must be a list, got {_type_name(shapes)}")
    if not isinstance(image_path, str) or not image_path.strip():
        what = repr(image_path) if isinstance(image_path, str) else _type_name(image_path)
        raise _Fatal(f"'imagePath' must be a non-empty string, got {what}")
    for key, v in (("imageHeight", h), ("imageWidth", w)):
        # labelme writes integers; accept an integral float (480.0) as well.
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise _Fatal(f"{key!r} must be an integer, got {_type_name(v)} {v!r}")
        if v <= 0:
            raise _Fatal(f"{key!r} must be positive, got {v}")
    if "imageData" in doc and doc["imageData"] is not None and not isinstance(doc["imageData"], str):
        raise _Fatal(f"'imageData' must be a base64 string or null, got {_type_name(doc['imageData'])}")
    return shapes, image_path, int(h), int(w)


def _check_shape(i: int, raw: Any, width: int, height: int, problems: list[str], dropped: Counter) -> Shape | None:
    """Check ``shapes[i]``; append problems to ``problems``; return the kept shape, or ``None``."""
    where = f"shapes[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object, got {_type_name(raw)}")
        return None
    if "label" not in raw or raw["label"] is None:
        problems.append(f"{where}: no label")
        return None
    label = raw["label"]
    if not isinstance(label, str):
        problems.append(f"{where}: label must be a string, got {_type_name(label)} {label!r}")
        return None
    try:
        norm = normalise_label(label)
    except KeyError:
        problems.append(
            f"{where}: unknown label {label!r} (expected one of {', '.join(spec.CLASSES)}, "
            f"or a legacy name {', '.join(sorted(spec.LEGACY_LABELS))})"
        )
        return None
    if norm is None:
        dropped[label] += 1
        return None
    where = f"{where} ({label!r})"

    shape_type = raw.get("shape_type", "polygon")  # labelme's own default when the key is absent
    if shape_type not in SHAPE_TYPES:
        problems.append(f"{where}: shape_type {shape_type!r} is not supported (expected 'polygon' or 'rectangle')")
        return None
    group_id = raw.get("group_id")
    if group_id is not None and (not isinstance(group_id, int) or isinstance(group_id, bool)):
        problems.append(f"{where}: group_id must be an integer or null, got {_type_name(group_id)} {group_id!r}")
        return None
    flags = raw.get("flags") or {}
    if not isinstance(flags, dict):
        problems.append(f"{where}: flags must be an object or null, got {_type_name(flags)}")
        return None

    pts_raw = raw.get("points")
    if pts_raw is None:
        problems.append(f"{where}: no points")
        return None
    if not isinstance(pts_raw, list):
        problems.append(f"{where}: points must be a list, got {_type_name(pts_raw)}")
        return None
    points: list[tuple[float, float]] = []
    for j, p in enumerate(pts_raw):
        if not isinstance(p, list) or len(p) != 2 or not all(_is_number(c) for c in p):
            problems.append(f"{where}: points[{j}] must be a pair of numbers [x, y], got {p!r}")
            return None
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.append(f"{where}: points[{j}] is not finite: [{p[0]!r}, {p[1]!r}]")
            return None
        points.append((x, y))
    if shape_type == "polygon" and len(points) < 3:
        problems.append(f"{where}: a polygon needs at least 3 points, got {len(points)}")
        return None
    if shape_type == "rectangle" and len(points) != 2:
        problems.append(f"{where}: a rectangle needs exactly 2 points, got {len(points)}")
        return None

    tol = POINT_TOLERANCE_PX
    clipped: list[tuple[float, float]] = []
    for j, (x, y) in enumerate(points):
        if not (-tol <= x <= width + tol and -tol <= y <= height + tol):
            problems.append(
                f"{where}: points[{j}] ({x:g}, {y:g}) is outside the {width}x{height} image by more than {tol:g} px"
            )
            return None
        clipped.append((min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))))

    shape = Shape(norm, tuple(clipped), shape_type, group_id, i, dict(flags))
    if shape_type == "rectangle":
        x1, y1, x2, y2 = shape.bounds()
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            problems.append(f"{where}: degenerate rectangle of size {x2 - x1:g}x{y2 - y1:g} px")
            return None
    elif shape.area() <= MIN_AREA_PX2:
        problems.append(f"{where}: degenerate polygon (zero area)")
        return None
    return shape


def _raw_label(raw: Any) -> str | None:
    """The label of a raw shape normalised (:func:`normalise_label`), or None when it has no known label."""
    label = raw.get("label") if isinstance(raw, dict) else None
    if not isinstance(label, str):
        return None
    try:
        return normalise_label(label)
    except KeyError:
        return None


def _labels_plate(raw: Any) -> bool:
    label = _raw_label(raw)
    return label is not None and spec.is_plate(label)


def _too_many_shapes(shapes_raw: list[Any]) -> str:
    """The problem of a file over :data:`MAX_SHAPES`, from the labels alone (no geometry is looked at)."""
    plates = [i for i, raw in enumerate(shapes_raw) if _labels_plate(raw)]
    n_chars = sum(1 for raw in shapes_raw if spec.is_character(_raw_label(raw) or ""))
    named = ", ".join(f"shapes[{i}] ({shapes_raw[i]['label']!r})" for i in plates[:_NAMED_PLATES])
    if len(plates) > _NAMED_PLATES:
        named += f" and {len(plates) - _NAMED_PLATES} more"
    outlines = f"{len(plates)} plate outline{'' if len(plates) == 1 else 's'}" + (f": {named}" if named else "")
    return (
        f"{len(shapes_raw)} shapes, over the limit of {MAX_SHAPES} per file; {n_chars} character shapes for "
        f"{outlines} (a plate has {spec.PLATE_LENGTH} characters)"
    )


def ground_truth_reading(shapes: Sequence[Shape]) -> dict[str, Any]:
    """Read the annotated plates of one file as PLATE_SPEC "Annotations" says, with
    :func:`alpr.model.reading.read_plates` (thresholds 0, no de-duplication, no syntax correction): a character
    belongs to the smallest plate outline (polygon) that contains its centre; its text is its characters in reading
    order (lines top to bottom, left to right within a line).

    Args:
        shapes: kept shapes of one file (:attr:`LabelmeFile.shapes`), pixel coordinates.

    Returns:
        the reading (``{"plates": [{"text", "layout", "valid", "box", "score", "characters"}, ...]}``): every plate
        outline of ``shapes``, in file order (all scores are 1.0), boxes in pixels rounded to 2 decimals.
    """
    dets = [Detection(s.label, s.bounds(), score=1.0, polygon=s.polygon()) for s in shapes]
    # No character de-duplication: two overlapping annotated characters are both part of the ground truth (a
    # duplicate shows up as a wrong count, not silently).
    return read_plates(
        dets, plate_score_thr=0.0, char_score_thr=0.0, char_nms_iou=None, char_containment=None, syntax=False
    )


def _position_problems(text: str) -> list[str]:
    """What is wrong, position by position (from 1), in a text of :data:`alpr.spec.PLATE_LENGTH` characters."""
    out = []
    for j, (char, letter) in enumerate(zip(text, spec.POSITION_IS_LETTER, strict=True)):
        if letter and not char.isalpha():
            out.append(f"position {j + 1} is {char!r}, a letter A-E expected")
        elif not letter and not char.isdigit():
            out.append(f"position {j + 1} is {char!r}, a digit 0-9 expected")
    return out or [f"it does not match {spec.PLATE_PATTERN.pattern}"]


def _check_plates(shapes: list[Shape], shapes_raw: list[Any], problems: list[str]) -> None:
    """Check each plate's characters against the plate contract (PLATE_SPEC "The plate"); append the problems.

    The plates are read by :func:`ground_truth_reading`. A plate must hold :data:`alpr.spec.PLATE_LENGTH`
    characters whose text matches :data:`alpr.spec.PLATE_PATTERN`.
    """
    plates = [s for s in shapes if spec.is_plate(s.label)]
    for shape, plate in zip(plates, ground_truth_reading(shapes)["plates"], strict=True):
        box = ", ".join(f"{c:g}" for c in plate["box"])
        where = f"shapes[{shape.index}] ({shapes_raw[shape.index]['label']!r}, box [{box}])"
        text, n = plate["text"], len(plate["characters"])
        if n != spec.PLATE_LENGTH:
            shown = f" ({text!r})" if 0 < n <= 2 * spec.PLATE_LENGTH else ""
            problems.append(
                f"{where}: holds {n} character{'' if n == 1 else 's'}{shown}, a plate has "
                f"{spec.PLATE_LENGTH} (a character belongs to the plate whose outline contains its centre)"
            )
        elif not spec.is_valid_text(text):
            problems.append(
                f"{where}: text {text!r} (its characters in reading order) is not a canonical plate "
                f"text: {'; '.join(_position_problems(text))}"
            )


def _image_candidates(json_path: Path, image_path: str, image_dir: Path | None) -> list[Path]:
    # labelme on Windows writes backslashes ("..\\images\\a.jpg"): read both separators.
    rel = PurePosixPath(image_path.replace("\\", "/"))
    is_abs = rel.is_absolute() or PureWindowsPath(image_path).is_absolute()
    out: list[Path] = []
    if image_dir is not None:
        if not is_abs:
            out.append(Path(image_dir) / rel)
        out.append(Path(image_dir) / rel.name)
    elif is_abs:
        out.append(Path(image_path))
    else:
        out.append(json_path.parent / rel)
    return list(dict.fromkeys(out))


def _displayed_size(img) -> tuple[int, int]:
    w, h = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block is not our concern: the pixels decide
        orientation = None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return h, w
    return w, h


def _check_image(json_path: Path, image_path: str, image_dir: Path | None, width: int, height: int) -> Path:
    from PIL import Image, UnidentifiedImageError

    candidates = _image_candidates(json_path, image_path, image_dir)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        tried = ", ".join(str(c) for c in candidates)
        raise _Fatal(f"image file not found: imagePath {image_path!r} (looked for {tried})")
    try:
        with Image.open(found) as img:  # lazy: reads the header only, no pixel decode
            real_w, real_h = _displayed_size(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _Fatal(f"image {str(found)!r} cannot be read as an image: {e}") from None
    if (real_w, real_h) != (width, height):
        raise _Fatal(
            f"image size mismatch: imageWidth x imageHeight is {width}x{height}, "
            f"but {found.name!r} is {real_w}x{real_h}"
        )
    return found.resolve()


def _inspect(
    path: Path, *, image_dir: Path | None = None, max_bytes: int = MAX_BYTES, check_plates: bool = True
) -> tuple[LabelmeFile | None, list[AnnotationError]]:
    """Check one file, collecting every problem found; return the file (``None`` when any problem) and them."""
    path = Path(path)
    try:
        doc = _read_json(path, max_bytes)
        shapes_raw, image_path, height, width = _check_header(doc)
        if len(shapes_raw) > MAX_SHAPES:
            raise _Fatal(_too_many_shapes(shapes_raw))
    except _Fatal as e:
        return None, [AnnotationError(path, str(e))]

    problems: list[str] = []
    dropped: Counter = Counter()
    shapes: list[Shape] = []
    for i, raw in enumerate(shapes_raw):
        s = _check_shape(i, raw, width, height, problems, dropped)
        if s is not None:
            shapes.append(s)
    if not shapes_raw:
        problems.append("no shapes")
    elif not shapes and not problems:
        problems.append(f"no shapes left after dropping {sum(dropped.values())} legacy text-region shape(s)")
    elif not any(_labels_plate(r) for r in shapes_raw):  # a plate with a problem of its own still counts here
        problems.append(f"no plate shape ({' or '.join(spec.PLATE_LABELS)})")
    elif check_plates and not problems:
        _check_plates(shapes, shapes_raw, problems)

    resolved: Path | None = None
    try:
        resolved = _check_image(path, image_path, image_dir, width, height)
    except _Fatal as e:
        problems.append(str(e))

    errors = [AnnotationError(path, p) for p in problems]
    if errors:
        return None, errors
    assert resolved is not None
    # imageData (a base64 copy of the image, up to max_bytes) is not kept: a folder of files must fit in memory.
    raw = {k: v for k, v in doc.items() if k != "imageData"}
    return LabelmeFile(path, resolved, width, height, shapes, dropped, raw), []


def load_labelme(
    path: Path, *, image_dir: Path | None = None, max_bytes: int = MAX_BYTES, check_plates: bool = True
) -> LabelmeFile:
    """Read and validate one labelme 5.x file (PLATE_SPEC "Annotations").

    Args:
        path: the labelme JSON file.
        image_dir: where to look for the image (``image_dir / imagePath``, then ``image_dir / <file name>``);
            by default ``imagePath`` is resolved relative to the JSON file's folder.
        max_bytes: files larger than this are refused before being read.
        check_plates: check each plate against the plate contract (see the module docstring); ``False`` reads
            annotations whose plates are not complete yet (the importer and the Record step always check).

    Returns:
        the validated file, labels normalised, dropped legacy shapes counted, points clipped onto the image.

    Raises:
        AnnotationError: the first problem found: the file too large, unreadable or not JSON (with line and
            column), missing keys or wrong types, a non-positive image size, a shape without label or points, an
            unsupported ``shape_type``, too few points, non-finite or out-of-image coordinates (beyond
            :data:`POINT_TOLERANCE_PX`), a degenerate shape, an unknown label, more than :data:`MAX_SHAPES`
            shapes, no shapes, no plate shape, a plate without :data:`alpr.spec.PLATE_LENGTH` characters or whose
            text is not canonical (the problem names the plate: ``shapes[i]``, its label and box), a missing or
            unreadable image, or an image whose real size differs from ``imageWidth`` x ``imageHeight``. Use
            :func:`validate_folder` to see every problem at once.
    """
    lf, errors = _inspect(Path(path), image_dir=image_dir, max_bytes=max_bytes, check_plates=check_plates)
    if errors:
        raise errors[0]
    assert lf is not None
    return lf


# --------------------------------------------------------------------------------------------------------------
# a folder


@dataclass
class FolderReport:
    """The result of :func:`validate_folder`.

    Attributes:
        folder: the folder checked.
        files: the files without any problem, sorted by path.
        errors: every problem found, file by file (a file may have several).
        class_counts: kept shapes per class, over the good files.
        dropped: dropped legacy shapes per label, over the good files.
        checked: how many ``*.json`` files were checked.
    """

    folder: Path
    files: list[LabelmeFile] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    class_counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    checked: int = 0

    @property
    def ok(self) -> bool:
        """Whether the folder is usable as an annotation version: at least one file, and no problem at all."""
        return not self.errors and bool(self.files)

    def bad_files(self) -> list[Path]:
        """Return the files with problems, in order, each once."""
        return list(dict.fromkeys(e.path for e in self.errors))

    def format(self) -> str:
        """Return a human-readable report: totals, per-class counts, dropped labels, every problem by file."""
        n_bad = len(self.bad_files())
        lines = [
            f"labelme folder {self.folder}: {self.checked} file(s) checked, {len(self.files)} good, "
            f"{n_bad} with problems ({len(self.errors)} problem(s)) -> {'OK' if self.ok else 'REFUSED'}",
            "instances per class (good files):",
        ]
        width = max(len(c) for c in spec.CLASSES)
        lines += [f"  {c:<{width}}  {self.class_counts.get(c, 0)}" for c in spec.CLASSES]
        if self.dropped:
            lines.append("dropped legacy text-region shapes:")
            lines += [f"  {k:<{width}}  {v}" for k, v in sorted(self.dropped.items())]
        if self.errors:
            lines.append("problems:")
            by_file: dict[Path, list[str]] = {}
            for e in self.errors:
                by_file.setdefault(e.path, []).append(e.problem)
            for p, probs in by_file.items():
                lines.append(f"  {p}")
                lines += [f"    - {x}" for x in probs]
        elif not self.files:
            lines.append("problems:\n  no labelme files")
        return "\n".join(lines)


def validate_folder(
    folder: Path,
    *,
    progress: bool = True,
    image_dir: Path | None = None,
    max_bytes: int = MAX_BYTES,
    check_plates: bool = True,
) -> FolderReport:
    """Validate every ``*.json`` file directly in ``folder`` (sorted by name), collecting every problem.

    Besides each file's own problems (see :func:`load_labelme`), two files annotating images with the same file
    name is a problem (the COCO export puts all images in one folder), reported on the later file.

    Args:
        folder: the folder of labelme files (not searched recursively).
        progress: show a tqdm progress bar (on stderr).
        image_dir, max_bytes, check_plates: as for :func:`load_labelme`.

    Returns:
        the report; :attr:`FolderReport.ok` is false when any file has a problem or there is no file.

    Raises:
        NotADirectoryError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"labelme folder not found: {folder}")
    from tqdm.auto import tqdm

    paths = sorted(p for p in folder.glob("*.json") if p.is_file())
    report = FolderReport(folder=folder, checked=len(paths))
    seen_names: dict[str, Path] = {}
    for p in tqdm(paths, desc="labelme", unit="file", disable=not progress):
        lf, errors = _inspect(p, image_dir=image_dir, max_bytes=max_bytes, check_plates=check_plates)
        if lf is not None:
            name = lf.image_path.name
            if name in seen_names:
                errors = [AnnotationError(p, f"image file name {name!r} is also used by {seen_names[name]}")]
            else:
                seen_names[name] = p
        report.errors.extend(errors)
        if lf is not None and not errors:
            report.files.append(lf)
            report.class_counts.update(lf.class_counts())
            report.dropped.update(lf.dropped)
    return report


def normalise_file(lf: LabelmeFile, *, image_path: str | None = None) -> dict[str, Any]:
    """Return the labelme dict of ``lf`` normalised: labels mapped to the detector's classes, dropped shapes
    removed, points clipped onto the image, ``imageData`` null; labelme's other fields are kept.

    Args:
        lf: a validated file.
        image_path: the ``imagePath`` to write (default: the file's own ``imagePath``).
    """
    raw = lf.raw
    raw_shapes = raw.get("shapes") or []
    shapes = []
    for s in lf.shapes:
        src = raw_shapes[s.index] if s.index < len(raw_shapes) and isinstance(raw_shapes[s.index], dict) else {}
        out = dict(src)
        out.update(
            label=s.label,
            points=[[x, y] for x, y in s.points],
            group_id=s.group_id,
            shape_type=s.shape_type,
            flags=dict(s.flags),
        )
        shapes.append(out)
    doc = dict(raw)
    doc.update(
        version=raw.get("version", "5.0.1"),
        flags=raw.get("flags") or {},
        shapes=shapes,
        imagePath=raw.get("imagePath") if image_path is None else image_path,
        imageData=None,
        imageHeight=lf.height,
        imageWidth=lf.width,
    )
    return doc
