"""The Test step's visual report: one HTML page that explains the errors, with its images beside it.

:func:`write_report` writes ``out_dir/index.html``, ``out_dir/images/*.jpg`` (one annotated thumbnail per image and
one small crop per plate), ``out_dir/confusion_matrix.json`` (:class:`ConfusionMatrix`) and
``out_dir/breakdown.json`` (:class:`alpr.model.breakdown.Breakdown`). The page links only to those files (relative
links), has its CSS inline and loads nothing from the network, so the folder can be copied to a bucket, a KFP
artifact or a laptop and opened as is; :func:`self_contained_html` inlines each image once for viewers that show a
single file. Every text on the page (plate texts, file names, metric names, lineage) goes through Jinja2
autoescaping: texts come from files and model outputs.

The page holds: a summary, the metrics, the lineage, the breakdown tables (per layout, plate width, angle and
brightness: :class:`alpr.model.breakdown.BreakdownMetrics`), the character confusion matrix (:func:`align_texts`,
:func:`plate_character_pairs`, :func:`confusion_matrix`) and one row per image: its thumbnail and, per plate, the
plate's crop beside its truth and reading with the differing characters marked (the same alignment as the matrix).

:func:`render_detections` draws one reading (PLATE_SPEC "A reading") on an image; the report uses it for the
thumbnails and other code (TensorBoard image logging) calls it directly.

Colours: a predicted plate is green when it matches a ground-truth plate (PLATE_SPEC matching: one-to-one,
greedy by score, IoU >= 0.5) with exactly the same text, red otherwise, and amber when no ground truth was given
(nothing to judge against). Character boxes are thin lines in their plate's colour. Ground-truth plates are
dashed blue boxes with their text below.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from alpr.model.breakdown import GROUP_TITLES, Breakdown, BreakdownMetrics
from alpr.model.metrics import match_plates
from alpr.spec import CHARACTERS

__all__ = [
    "CONFUSION_CLASSES",
    "CONFUSION_FILE",
    "BREAKDOWN_FILE",
    "MISSING",
    "THUMBNAIL_MAX_SIDE",
    "ConfusionMatrix",
    "ReportEntry",
    "align_texts",
    "confusion_matrix",
    "plate_character_pairs",
    "render_detections",
    "self_contained_html",
    "write_report",
]

#: Longest side of a report thumbnail, in pixels. With :data:`THUMBNAIL_JPEG_QUALITY` a 1280 x 720 frame gives a
#: thumbnail of about 20-30 kB, so ~200 test images fit a self-contained report well under 10 MB (issue 14).
THUMBNAIL_MAX_SIDE: Final = 512
THUMBNAIL_JPEG_QUALITY: Final = 72
#: A plate crop's height in the report, in pixels (its width follows the plate, at most :data:`CROP_MAX_WIDTH`).
CROP_HEIGHT: Final = 48
CROP_MAX_WIDTH: Final = 240
#: Context kept around a plate box in its crop, as a fraction of the box height on every side.
CROP_MARGIN: Final = 0.25
CROP_JPEG_QUALITY: Final = 85

#: The confusion matrix's symbol for "no character": a truth character nothing was read for (column), or a read
#: character that is not on the plate (row).
MISSING: Final = "\u2205"
#: The confusion matrix's classes, rows (truth) and columns (read) alike: the plate characters, then :data:`MISSING`.
CONFUSION_CLASSES: Final[tuple[str, ...]] = CHARACTERS + (MISSING,)
#: Files :func:`write_report` writes beside ``index.html``.
CONFUSION_FILE: Final = "confusion_matrix.json"
BREAKDOWN_FILE: Final = "breakdown.json"

GREEN = (0, 190, 60)
RED = (230, 30, 30)
AMBER = (255, 176, 0)  # predictions drawn without ground truth
TRUTH_BLUE = (30, 120, 255)


@dataclass
class ReportEntry:
    """One test image for the report.

    Attributes:
        image_path: the image file (any format Pillow reads); boxes are in its pixel grid.
        truth: ground-truth plates, each ``{"box": [x1, y1, x2, y2], "text": str, "layout": str}`` (pixels), and
            optionally ``"points"`` (the outline polygon, for the angle breakdown).
        reading: the model's reading (PLATE_SPEC "A reading"): ``{"plates": [{"text", "layout", "valid", "box",
            "score", "characters": [{"char", "box", "score"}, ...]}, ...]}``.
    """

    image_path: Path
    truth: list[dict] = field(default_factory=list)
    reading: dict = field(default_factory=lambda: {"plates": []})


# -- helpers on loosely-typed readings -----------------------------------------------------------------------
def _box(value: Any) -> tuple[float, float, float, float] | None:
    """Return ``value`` as a finite ``(x1, y1, x2, y2)`` tuple (pixels), or None when it is not one."""
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _score(value: Any) -> float:
    """Return ``value`` as a float score, NaN when missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _plates(reading: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The plates of a reading (an empty list for None or a reading without ``plates``)."""
    if not reading:
        return []
    return [p for p in (reading.get("plates") or []) if isinstance(p, Mapping)]


def _matches(truth: Sequence[Mapping[str, Any]], plates: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Match plates to truth (PLATE_SPEC); return ``(truth index, predicted index)`` pairs.

    Plates or truths without a usable box never match (an empty box has IoU 0).
    """
    empty = (0.0, 0.0, 0.0, 0.0)
    return match_plates(
        [(_box(t.get("box")) or empty, str(t.get("text", ""))) for t in truth],
        [(_box(p.get("box")) or empty, str(p.get("text", "")), _score(p.get("score"))) for p in plates],
    )


def _exact_predictions(truth: Sequence[Mapping[str, Any]], plates: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Match plates to truth (PLATE_SPEC); return {predicted index: truth index} for the exact-text matches only."""
    return {j: i for i, j in _matches(truth, plates) if str(truth[i].get("text", "")) == str(plates[j].get("text", ""))}


# -- drawing -------------------------------------------------------------------------------------------------
def _to_pil(image: np.ndarray | Path | str | Image.Image) -> Image.Image:
    """Return ``image`` as an RGB Pillow image.

    Arrays are ``H x W`` (grey) or ``H x W x C`` with C = 1, 3 (RGB order) or 4 (RGBA); uint8 as is, floats in
    [0, 1] scaled by 255 (other floats and integers clipped to 0..255), bool as 0/255.

    Raises:
        FileNotFoundError: a path that does not exist.
        PIL.UnidentifiedImageError / OSError: a file Pillow cannot decode.
        ValueError: an array of another shape.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or arr.size == 0:
        raise ValueError(f"expected an H x W or H x W x 3/4 image array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.max(initial=0.0) <= 1.0:
            finite = finite * 255.0
        arr = np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (the bitmap default where FreeType is unavailable)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # very old Pillow or no FreeType
        return ImageFont.load_default()


def _drawable(text: Any, limit: int = 32) -> str:
    """Text safe for the built-in font: printable ASCII only (others -> ``?``), at most ``limit`` characters."""
    s = "".join(c if " " <= c <= "~" else "?" for c in str(text))
    return s if len(s) <= limit else s[: limit - 1] + "~"


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour, width: int) -> None:
    """Draw a dashed rectangle (dashes 4 x width long, gaps 3 x width)."""
    x1, y1, x2, y2 = box
    dash, gap = 4 * width, 3 * width
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = math.hypot(bx - ax, by - ay)
        if length == 0:
            continue
        ux, uy = (bx - ax) / length, (by - ay) / length
        pos = 0.0
        while pos < length:
            end = min(pos + dash, length)
            draw.line([(ax + ux * pos, ay + uy * pos), (ax + ux * end, ay + uy * end)], fill=colour, width=width)
            pos = end + gap


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    anchor_box: Sequence[float],
    colour,
    font,
    *,
    below: bool,
    size: tuple[int, int],
) -> None:
    """Draw ``text`` on a filled ``colour`` tag just above (or ``below``) ``anchor_box``, kept inside the image."""
    if not text:
        return
    width, height = size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 4, bottom - top + 4
    x1, y1, x2, y2 = anchor_box
    x = min(max(x1, 0), max(width - tw, 0))
    y = y2 + 1 if below else y1 - th - 1
    if y < 0 or y + th > height:  # no room outside the box: put the tag just inside it
        y = y2 - th - 1 if below else y1 + 1
    y = min(max(y, 0), max(height - th, 0))
    draw.rectangle([x, y, x + tw, y + th], fill=colour)
    ink = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)


def render_detections(
    image: np.ndarray | Path | str | Image.Image,
    reading: Mapping[str, Any] | None,
    truth: Sequence[Mapping[str, Any]] | None = None,
    *,
    max_side: int | None = None,
) -> Image.Image:
    """Draw a reading (and optionally the ground truth) on an image.

    Each predicted plate gets its box (green: matches a ground-truth plate with exactly the same text; red:
    does not; amber: ``truth`` is None) with a ``TEXT score`` tag, and its character boxes as thin lines.
    Ground-truth plates are dashed blue boxes with their text below. Plates without a finite box are skipped;
    an empty or None reading draws nothing but the truth.

    Args:
        image: an ``H x W x 3`` RGB (note: OpenCV images are BGR, convert them first), ``H x W`` grey or
            ``H x W x 4`` RGBA array (uint8, or floats in [0, 1]), a Pillow image, or an image file path.
            The reading's boxes are in this image's pixels.
        reading: a PLATE_SPEC reading ``{"plates": [...]}``.
        truth: ground-truth plates ``[{"box", "text", "layout"}, ...]``; None when unknown.
        max_side: when given, the image is first shrunk so its longer side is at most this many pixels and
            the boxes are scaled to match (sharper tags than shrinking a drawn image); None keeps the original size.

    Returns:
        A new RGB Pillow image, of the original size unless ``max_side`` shrank it.

    Raises:
        FileNotFoundError, OSError: ``image`` is a path that cannot be read or decoded.
        ValueError: ``image`` is an array of another shape, or ``max_side`` < 1.
    """
    canvas = _to_pil(image).copy()
    scale = 1.0
    if max_side is not None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1 pixel, got {max_side}")
        long_side = max(canvas.size)
        if long_side > max_side:
            scale = max_side / long_side
            new_size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
            canvas = canvas.resize(new_size, Image.Resampling.LANCZOS)
    size = canvas.size
    long_side = max(size)
    line = max(1, round(long_side / 320))
    thin = max(1, line // 2)
    font = _font(max(10, round(long_side / 45)))
    draw = ImageDraw.Draw(canvas)

    def scaled(value: Any) -> tuple[float, float, float, float] | None:
        b = _box(value)
        return None if b is None else tuple(v * scale for v in b)  # type: ignore[return-value]

    plates = _plates(reading)
    truth_list = [t for t in (truth or []) if isinstance(t, Mapping)]
    exact = _exact_predictions(truth_list, plates) if truth is not None else {}

    for t in truth_list:
        b = scaled(t.get("box"))
        if b is None:
            continue
        _dashed_rectangle(draw, b, TRUTH_BLUE, line)
        _label(draw, _drawable(t.get("text", "")), b, TRUTH_BLUE, font, below=True, size=size)

    # Lowest score first, so the most confident plate ends up on top.
    def draw_key(j: int) -> float:
        score = _score(plates[j].get("score"))
        return -math.inf if math.isnan(score) else score

    order = sorted(range(len(plates)), key=draw_key)
    for j in order:
        plate = plates[j]
        b = scaled(plate.get("box"))
        if b is None:
            continue
        colour = AMBER if truth is None else (GREEN if j in exact else RED)
        for ch in plate.get("characters") or []:
            cb = scaled(ch.get("box")) if isinstance(ch, Mapping) else None
            if cb is not None:
                draw.rectangle(cb, outline=colour, width=thin)
        draw.rectangle(b, outline=colour, width=line)
        text = str(plate.get("text", "")) or "(no text)"
        score = _score(plate.get("score"))
        tag = f"{_drawable(text)} {score:.2f}" if not math.isnan(score) else _drawable(text)
        _label(draw, tag, b, colour, font, below=False, size=size)
    return canvas


# -- character alignment and the confusion matrix ------------------------------------------------------------
def align_texts(truth: str, read: str) -> list[tuple[str, str]]:
    """Align a ground-truth text with a read text character by character, by a minimal Levenshtein edit script.

    The script is rapidfuzz's ``Levenshtein.opcodes(truth, read)`` (:mod:`rapidfuzz.distance`): equal and replaced
    characters give ``(truth char, read char)`` pairs, a truth character left out of the reading gives
    ``(char, MISSING)`` and a read character that is not on the plate gives ``(MISSING, char)``. So the number of
    unequal pairs is the Levenshtein distance that PLATE_SPEC's character accuracy sums.

    Args:
        truth: the ground-truth text (any string).
        read: the read text (any string).

    Returns:
        The pairs in text order; ``max(len(truth), len(read))`` to ``len(truth) + len(read)`` of them; empty for
        two empty texts. E.g. ``align_texts("12A3456", "12B456")`` has ``("A", "B")`` and one ``(c, MISSING)``.
    """
    truth, read = str(truth), str(read)
    pairs: list[tuple[str, str]] = []
    for op in Levenshtein.opcodes(truth, read):
        src = truth[op.src_start : op.src_end]
        dest = read[op.dest_start : op.dest_end]
        if op.tag in ("equal", "replace"):
            # Levenshtein replacements are one for one; any length difference is kept as deletions/insertions.
            pairs.extend(zip(src, dest, strict=False))
            pairs.extend((c, MISSING) for c in src[len(dest) :])
            pairs.extend((MISSING, c) for c in dest[len(src) :])
        elif op.tag == "delete":
            pairs.extend((c, MISSING) for c in src)
        elif op.tag == "insert":
            pairs.extend((MISSING, c) for c in dest)
    return pairs


def plate_character_pairs(
    truth_plates: Sequence[Mapping[str, Any]], reading: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """The ``(truth char, read char)`` pairs of one image, for :func:`confusion_matrix`.

    Plates are matched as PLATE_SPEC "Metrics" says (:func:`alpr.model.metrics.match_plates`: one-to-one, greedy by
    descending score, IoU >= 0.5); each matched pair's texts are aligned by :func:`align_texts`; an unmatched
    ground-truth plate counts every character as read as :data:`MISSING`. Predicted plates matched to no ground
    truth add nothing (as in PLATE_SPEC's character accuracy: they are plate-precision errors).

    Args:
        truth_plates: ``[{"box": [x1, y1, x2, y2], "text": str, ...}, ...]`` (pixels); entries without a usable box
            never match.
        reading: the reading (PLATE_SPEC "A reading"); None or a reading without ``plates`` reads nothing.

    Returns:
        The pairs, truth plate by truth plate in input order.
    """
    truth = [t for t in truth_plates if isinstance(t, Mapping)]
    plates = _plates(reading)
    read_of = dict(_matches(truth, plates))
    pairs: list[tuple[str, str]] = []
    for i, t in enumerate(truth):
        text = str(t.get("text", ""))
        if i in read_of:
            pairs.extend(align_texts(text, str(plates[read_of[i]].get("text", ""))))
        else:
            pairs.extend((c, MISSING) for c in text)
    return pairs


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of ``(truth character, read character)`` pairs (see :func:`plate_character_pairs`).

    Attributes:
        classes: the row and column labels (:data:`CONFUSION_CLASSES`): rows are the truth, columns the reading.
        counts: ``counts[i][j]`` = pairs whose truth is ``classes[i]`` and reading ``classes[j]``; ``len(classes)``
            rows of ``len(classes)`` non-negative integers (the ``MISSING``/``MISSING`` cell is always 0).
        outside: pairs left out because a character is not one of ``classes`` (a reading or a ground truth with a
            character outside PLATE_SPEC's alphabet).

    Raises:
        ValueError: ``counts`` is not ``len(classes)`` x ``len(classes)`` non-negative integers, the classes repeat,
            or ``outside`` is negative.
    """

    classes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    outside: int = 0

    def __post_init__(self) -> None:
        n = len(self.classes)
        if len(set(self.classes)) != n:
            raise ValueError(f"confusion matrix classes repeat: {list(self.classes)}")
        if len(self.counts) != n or any(len(row) != n for row in self.counts):
            raise ValueError(f"confusion matrix counts must be {n} x {n} (one row and column per class)")
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for row in self.counts for c in row):
            raise ValueError("confusion matrix counts must be non-negative integers")
        if not isinstance(self.outside, int) or self.outside < 0:
            raise ValueError(f"confusion matrix 'outside' must be a non-negative integer, got {self.outside!r}")

    @property
    def total(self) -> int:
        """All counted pairs (``outside`` not included)."""
        return sum(sum(row) for row in self.counts)

    def as_array(self) -> np.ndarray:
        """The counts as an ``int64`` array of shape ``(len(classes), len(classes))``, rows = truth."""
        return np.array(self.counts, dtype=np.int64).reshape(len(self.classes), len(self.classes))

    def confusions(self, limit: int | None = None) -> list[tuple[str, str, int]]:
        """The non-zero off-diagonal cells as ``(truth, read, count)``, most frequent first (ties in class order);
        at most ``limit`` of them when given."""
        cells = [
            (self.classes[i], self.classes[j], c)
            for i, row in enumerate(self.counts)
            for j, c in enumerate(row)
            if i != j and c > 0
        ]
        cells.sort(key=lambda cell: -cell[2])  # stable: class order among ties
        return cells if limit is None else cells[:limit]

    def to_json(self) -> dict[str, Any]:
        """``{"classes": [...], "matrix": [[...], ...], "outside": n}`` (rows = truth, columns = reading)."""
        return {"classes": list(self.classes), "matrix": [list(row) for row in self.counts], "outside": self.outside}

    @classmethod
    def from_json(cls, doc: Any, source: str = "confusion matrix") -> ConfusionMatrix:
        """Read :meth:`to_json`'s form back.

        Raises:
            ValueError: ``doc`` is not that form; the message names ``source`` and the field at fault.
        """
        if not isinstance(doc, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        for key in ("classes", "matrix"):
            if not isinstance(doc.get(key), list):
                raise ValueError(f"{source}: {key!r} must be a list")
        if not all(isinstance(row, list) for row in doc["matrix"]):
            raise ValueError(f"{source}: 'matrix' must be a list of rows (lists)")
        try:
            return cls(
                classes=tuple(str(c) for c in doc["classes"]),
                counts=tuple(tuple(row) for row in doc["matrix"]),
                outside=doc.get("outside", 0),
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> ConfusionMatrix:
        """Read a :data:`CONFUSION_FILE` that :func:`write_report` wrote.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: it is not JSON of :meth:`to_json`'s form (the message names the file).
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from exc
        return cls.from_json(doc, source=str(path))


def confusion_matrix(pairs: Iterable[tuple[str, str]], classes: Sequence[str] = CONFUSION_CLASSES) -> ConfusionMatrix:
    """Count ``(truth char, read char)`` pairs (from :func:`align_texts` / :func:`plate_character_pairs`).

    Args:
        pairs: the pairs; a pair with a character not in ``classes`` is counted in ``outside`` only.
        classes: the labels (default :data:`CONFUSION_CLASSES`: PLATE_SPEC's characters, then :data:`MISSING`).

    Returns:
        The :class:`ConfusionMatrix` (all zeros for no pairs).

    Raises:
        ValueError: ``classes`` repeat.
    """
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"confusion matrix classes repeat: {list(classes)}")
    index = {c: k for k, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    outside = 0
    for truth_char, read_char in pairs:
        i, j = index.get(truth_char), index.get(read_char)
        if i is None or j is None:
            outside += 1
        else:
            counts[i, j] += 1
    return ConfusionMatrix(classes, tuple(tuple(int(c) for c in row) for row in counts), outside)


# -- the page ------------------------------------------------------------------------------------------------
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #222; }
h1 { margin-top: 0; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.mistake { background: #fff1f1; }
tr.correct { background: #f3fff4; }
.ok { color: #0a8f2c; font-weight: bold; }
.bad { color: #c81e1e; font-weight: bold; }
.plate { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 1.1rem; white-space: pre; }
.plate .diff { color: #c81e1e; font-weight: bold; text-decoration: underline; }
.plate .gap { color: #999; }
.muted { color: #777; }
img.thumb { max-width: {{ thumb_side }}px; max-height: {{ thumb_side }}px; display: block; }
img.crop { display: block; max-height: {{ crop_height }}px; }
.legend span { display: inline-block; padding: 0 .4rem; margin-right: .6rem; border: 2px solid; }
table.plates { margin: 0; }
table.plates td, table.plates th { border-color: #e2e2e2; }
table.confusion td, table.confusion th { text-align: center; padding: .2rem .45rem; min-width: 1.6rem; }
table.confusion th.axis { background: #fff; }
.groups { display: flex; flex-wrap: wrap; gap: 0 2rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="muted">Generated {{ generated }}.</p>

<h2>Summary</h2>
<table class="summary">
<tr><th>images</th><td class="num">{{ summary.images }}</td></tr>
<tr><th>images read exactly</th><td class="num">{{ summary.images_exact }}</td></tr>
<tr><th>images with mistakes</th><td class="num">{{ summary.images_mistakes }}</td></tr>
<tr><th>ground-truth plates</th><td class="num">{{ summary.truth_plates }}</td></tr>
<tr><th>exact reads</th><td class="num">{{ summary.exact_reads }} / {{ summary.truth_plates }}</td></tr>
<tr><th>misread plates</th><td class="num">{{ summary.misread }}</td></tr>
<tr><th>plates not found</th><td class="num">{{ summary.missed }}</td></tr>
<tr><th>predicted plates</th><td class="num">{{ summary.predicted_plates }}</td></tr>
<tr><th>plates read where there is none</th><td class="num">{{ summary.extra }}</td></tr>
</table>

<h2>Metrics</h2>
{% if metrics %}
<table class="metrics">
<tr><th>metric</th><th>value</th></tr>
{% for name, value in metrics %}<tr><td>{{ name }}</td><td class="num">{{ value }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">No metrics.</p>{% endif %}

{% if lineage %}
<h2>Lineage</h2>
<table class="lineage">
<tr><th>key</th><th>value</th></tr>
{% for key, value in lineage %}<tr><td>{{ key }}</td><td><code>{{ value }}</code></td></tr>
{% endfor %}
</table>
{% endif %}

<h2>Breakdown</h2>
<p class="muted">The plate metrics per group of ground-truth plates (a predicted plate counts in the group of the
plate it matches).{% if unreadable %} {{ unreadable }} image(s) could not be read and are not in these tables.{% endif %}</p>
{% for group in breakdown %}
<h3>{{ group.title }}</h3>
{% if group.unassigned %}<p class="muted">{{ group.unassigned }} plate(s) with this attribute unknown are in no
bucket.</p>{% endif %}
{% if group.rows %}
<table class="breakdown breakdown-{{ group.name }}">
<tr>{% for column in group.columns %}<th>{{ column }}</th>{% endfor %}</tr>
{% for row in group.rows %}<tr>{% for cell in row %}<td class="{{ cell.cls }}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% else %}<p class="muted">No plates.</p>{% endif %}
{% else %}<p class="muted">No plates.</p>
{% endfor %}

<h2>Character confusion</h2>
<p class="muted">Rows: the ground-truth character; columns: what was read there (texts aligned by a minimal
Levenshtein edit script). {{ missing }} as a column: a character read as nothing (or its plate not found); as a
row: a character read where the plate has none. Cell colour: share of the row.{% if confusion.outside %}
{{ confusion.outside }} character pair(s) with a character outside the plate alphabet are not counted.{% endif %}</p>
{% if confusion.total %}
<table class="confusion">
<tr><th class="axis">truth \\ read</th>{% for c in confusion.classes %}<th>{{ c }}</th>{% endfor %}<th>all</th></tr>
{% for row in confusion.rows %}
<tr><th>{{ row.label }}</th>{% for cell in row.cells %}<td class="num" title="{{ cell.title }}"{% if cell.style %} style="{{ cell.style }}"{% endif %}>{{ cell.text }}</td>{% endfor %}<td class="num">{{ row.total }}</td></tr>
{% endfor %}
</table>
{% if confusion.top %}
<p>Most frequent confusions:
{% for t, r, n in confusion.top %}<span class="plate">{{ t }}&rarr;{{ r }}</span>&nbsp;{{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</p>
{% else %}<p class="ok">No character was confused.</p>{% endif %}
{% else %}<p class="muted">No ground-truth characters.</p>{% endif %}

<h2>Images</h2>
<p class="legend">Boxes: <span style="border-color: rgb{{ colours.green }}">read exactly</span>
<span style="border-color: rgb{{ colours.red }}">wrong / unmatched</span>
<span style="border-color: rgb{{ colours.truth }}; border-style: dashed">ground truth</span>
Texts: <span class="plate"><span class="diff">X</span></span> differs from the other text,
<span class="plate"><span class="gap">{{ missing }}</span></span> nothing there.
Mistakes are listed first.{% if omitted %} Pictures are drawn for the first {{ max_images }} images only.{% endif %}</p>
{% if rows %}
<table class="images">
<tr><th>#</th><th>image</th><th>plates</th><th>exact</th></tr>
{% for row in rows %}
<tr class="{{ 'correct' if row.exact else 'mistake' }}">
<td class="num">{{ loop.index }}</td>
<td>
{% if row.thumbnail %}<img class="thumb" src="{{ row.thumbnail }}" alt="{{ row.name }}" loading="lazy">
{% elif row.error %}<span class="bad">image could not be drawn: {{ row.error }}</span>
{% else %}<span class="muted">not drawn (max_images = {{ max_images }})</span>{% endif %}
<div class="muted" title="{{ row.path }}">{{ row.name }}</div>
</td>
<td>{% if row.plates %}<table class="plates">
<tr><th>plate</th><th>ground truth</th><th>read</th><th></th></tr>
{% for p in row.plates %}<tr>
<td>{% if p.crop %}<img class="crop" src="{{ p.crop }}" alt="{{ p.truth_text or p.read_text }}" loading="lazy">{% endif %}</td>
<td>{% if p.truth is not none %}<span class="plate">{% for s in p.truth %}<span class="{{ s.cls }}">{{ s.text }}</span>{% endfor %}</span>
<span class="muted">{{ p.truth_layout }}</span>{% else %}<span class="muted">no plate</span>{% endif %}</td>
<td>{% if p.read is not none %}<span class="plate">{% for s in p.read %}<span class="{{ s.cls }}">{{ s.text }}</span>{% endfor %}</span>
<span class="muted">{{ p.read_layout }} score {{ p.score }}{% if not p.valid %}, invalid text{% endif %}</span>
{% else %}<span class="muted">no plate read</span>{% endif %}</td>
<td>{% if p.status == "exact" %}<span class="ok">&#10003;</span>{% else %}<span class="bad">&#10007; {{ p.status }}</span>{% endif %}</td>
</tr>{% endfor %}
</table>{% else %}<span class="muted">no plate, no plate read</span>{% endif %}</td>
<td>{% if row.exact %}<span class="ok">&#10003;</span>{% else %}<span class="bad">&#10007;</span>{% endif %}</td>
</tr>
{% endfor %}
</table>
{% else %}<p class="muted">No images.</p>{% endif %}
</body>
</html>
"""


def _format_value(value: Any) -> str:
    """Format a metric value: floats with 4 decimals (``NaN`` / ``inf`` spelled out), others as ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.4f}"


def _format_lineage(value: Any) -> str:
    """Format a lineage value: strings as is, anything else as compact JSON (``str`` for the unserialisable)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _safe_name(name: str, limit: int = 60) -> str:
    """A file-name-safe version of ``name`` (``[A-Za-z0-9._-]`` only, at most ``limit`` characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    return cleaned[:limit]


def _segments(pairs: Sequence[tuple[str, str]], side: int) -> list[dict[str, str]]:
    """One side (0 = truth, 1 = reading) of aligned pairs as runs ``{"text", "cls"}`` for the page: ``same`` where
    both sides agree, ``gap`` where this side has nothing (shown as :data:`MISSING`), ``diff`` elsewhere."""
    runs: list[dict[str, str]] = []
    for pair in pairs:
        char = pair[side]
        cls = "same" if pair[0] == pair[1] else ("gap" if char == MISSING else "diff")
        if runs and runs[-1]["cls"] == cls:
            runs[-1]["text"] += char
        else:
            runs.append({"text": char, "cls": cls})
    return runs


def _analyse(entry: ReportEntry) -> dict[str, Any]:
    """Compare one entry's reading with its truth: one row per plate and whether the image was read exactly.

    Plate rows (ground-truth plates in input order, then the predicted plates matched to none, by score):
    ``truth``/``read`` are the texts as :func:`_segments` runs of their :func:`align_texts` alignment (None when
    that side has no plate), ``status`` is ``exact``, ``misread``, ``not found`` or ``no such plate`` and
    ``crop_box`` the box to crop (the truth's, else the prediction's). An image is read exactly when every
    ground-truth plate is matched (PLATE_SPEC) with exactly its text and no other plate was read; an image with no
    plate and no reading counts as exact.
    """
    truth = [t for t in (entry.truth or []) if isinstance(t, Mapping)]
    plates = _plates(entry.reading)
    read_of = dict(_matches(truth, plates))
    matched = set(read_of.values())

    def read_fields(p: Mapping[str, Any]) -> dict[str, Any]:
        score = _score(p.get("score"))
        return {
            "read_text": str(p.get("text", "")),
            "read_layout": str(p.get("layout", "") or ""),
            "score": "n/a" if math.isnan(score) else f"{score:.2f}",
            "valid": bool(p.get("valid", True)),
        }

    rows = []
    for i, t in enumerate(truth):
        text = str(t.get("text", ""))
        row: dict[str, Any] = {"truth_text": text, "truth_layout": str(t.get("layout", "") or ""), "read": None}
        row["crop_box"] = _box(t.get("box"))
        if i in read_of:
            p = plates[read_of[i]]
            row.update(read_fields(p))
            pairs = align_texts(text, row["read_text"])
            row["truth"], row["read"] = _segments(pairs, 0), _segments(pairs, 1)
            row["status"] = "exact" if text == row["read_text"] else "misread"
            row["crop_box"] = row["crop_box"] or _box(p.get("box"))
        else:
            row["truth"] = _segments([(c, MISSING) for c in text], 0)
            row["read_text"] = ""
            row["status"] = "not found"
        rows.append(row)
    extras = sorted((j for j in range(len(plates)) if j not in matched), key=lambda j: _score_key(plates[j]))
    for j in extras:
        p = plates[j]
        row = {"truth_text": "", "truth_layout": "", "truth": None, "status": "no such plate"}
        row.update(read_fields(p))
        row["read"] = _segments([(MISSING, c) for c in row["read_text"]], 1)
        row["crop_box"] = _box(p.get("box"))
        rows.append(row)
    n_exact = sum(r["status"] == "exact" for r in rows)
    return {
        "plates": rows,
        "n_truth": len(truth),
        "n_read": len(plates),
        "n_exact": n_exact,
        "exact": n_exact == len(truth) == len(plates),
    }


def _score_key(plate: Mapping[str, Any]) -> float:
    """Sort key: descending score, NaN last."""
    score = _score(plate.get("score"))
    return math.inf if math.isnan(score) else -score


def _crop(image: Image.Image, box: tuple[float, float, float, float] | None) -> Image.Image | None:
    """The plate ``box`` (pixels of ``image``) with :data:`CROP_MARGIN` around it, scaled to :data:`CROP_HEIGHT`
    pixels high (at most :data:`CROP_MAX_WIDTH` wide); None when the box is missing or outside the image."""
    if box is None:
        return None
    x1, y1, x2, y2 = box
    margin = CROP_MARGIN * (y2 - y1)
    left, top = max(0, math.floor(x1 - margin)), max(0, math.floor(y1 - margin))
    right, bottom = min(image.width, math.ceil(x2 + margin)), min(image.height, math.ceil(y2 + margin))
    if right - left < 1 or bottom - top < 1:
        return None
    region = image.crop((left, top, right, bottom))
    scale = min(CROP_HEIGHT / region.height, CROP_MAX_WIDTH / region.width)
    size = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
    return region.resize(size, Image.Resampling.LANCZOS)


def _breakdown_plates(entry: ReportEntry) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The entry's truth and reading in the strict form :class:`BreakdownMetrics` takes: every plate with a box
    (an empty one where unusable: it matches nothing), a text, a layout (``unknown`` where missing) and, predicted,
    a score (NaN where missing)."""
    empty = [0.0, 0.0, 0.0, 0.0]

    def strict(plate: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **plate,
            "box": list(_box(plate.get("box")) or empty),
            "text": str(plate.get("text", "")),
            "layout": str(plate.get("layout") or "unknown"),
        }

    truth = [strict(t) for t in (entry.truth or []) if isinstance(t, Mapping)]
    plates = [{**strict(p), "score": _score(p.get("score"))} for p in _plates(entry.reading)]
    return truth, {"plates": plates}


def _breakdown_view(breakdown: Breakdown) -> list[dict[str, Any]]:
    """The breakdown's groups as page tables: ``{"name", "title", "unassigned", "columns", "rows": [[{"text",
    "cls"}]]}`` (columns: ``bucket`` then :data:`alpr.model.breakdown.FIGURES`)."""
    groups = []
    for name in breakdown.groups:
        table = breakdown.table(name)
        columns = list(table[0]) if table else []
        rows = [
            [
                {
                    "text": _format_value(row.get(c)) if not isinstance(row.get(c), str) else row[c],
                    "cls": "" if isinstance(row.get(c), str) else "num",
                }
                for c in columns
            ]
            for row in table
        ]
        groups.append(
            {
                "name": name,
                "title": f"Per {GROUP_TITLES.get(name, name)}",
                "unassigned": breakdown.unassigned.get(name, 0),
                "columns": columns,
                "rows": rows,
            }
        )
    return groups


def _heat(count: int, total: int, diagonal: bool) -> str:
    """A cell's CSS background: green on the diagonal (right reads), red elsewhere, stronger for a larger share
    of the row (off-diagonal shares are small, so they get a square-root scale); empty for a zero count."""
    if count <= 0 or total <= 0:
        return ""
    share = count / total
    if diagonal:
        return f"background: rgba(10, 143, 44, {0.1 + 0.5 * share:.2f})"
    return f"background: rgba(210, 30, 30, {min(1.0, 0.15 + 0.75 * math.sqrt(share)):.2f})"


def _confusion_view(matrix: ConfusionMatrix) -> dict[str, Any]:
    """The confusion matrix as page rows of heat-coloured cells, plus its ten most frequent confusions."""
    rows = []
    for i, label in enumerate(matrix.classes):
        total = sum(matrix.counts[i])
        cells = [
            {
                "text": str(count) if count else "",
                "style": _heat(count, total, i == j),
                "title": f"truth {label}, read {matrix.classes[j]}: {count}",
            }
            for j, count in enumerate(matrix.counts[i])
        ]
        rows.append({"label": label, "cells": cells, "total": total})
    return {
        "classes": matrix.classes,
        "rows": rows,
        "total": matrix.total,
        "outside": matrix.outside,
        "top": matrix.confusions(limit=10),
    }


def _save_jpeg(picture: Image.Image, path: Path, quality: int) -> None:
    picture.save(path, "JPEG", quality=quality, optimize=True)


def write_report(
    out_dir: Path,
    entries: Sequence[ReportEntry],
    metrics: Mapping[str, float],
    *,
    title: str,
    lineage: Mapping[str, Any] | None = None,
    max_images: int = 200,
    breakdown: Breakdown | None = None,
) -> Path:
    """Write the HTML report of a test run into ``out_dir`` and return ``out_dir/index.html``.

    The page shows the title, a summary (images, images read exactly, ground-truth plates, exact reads, misread and
    not found plates, predicted plates, plates read where there is none), the metrics table, the lineage table (when
    given), the breakdown tables (:class:`alpr.model.breakdown.BreakdownMetrics`: per layout, plate width, angle and
    brightness), the character confusion matrix (:func:`plate_character_pairs`, :func:`confusion_matrix`) and one
    row per image: an annotated thumbnail (see :func:`render_detections`; JPEG, longest side <=
    :data:`THUMBNAIL_MAX_SIDE` pixels) and one line per plate: its crop (JPEG, :data:`CROP_HEIGHT` pixels high),
    its ground truth and reading with the differing characters marked (:func:`align_texts`) and a verdict. Images
    with mistakes come first, each group in input order. Pictures (thumbnail and crops) are drawn for the first
    ``max_images`` rows only (so mistakes get them first); every image still gets its row and counts in the
    breakdown and the matrix. An image that cannot be read gets a row with the error instead of pictures and is
    left out of the breakdown computed here (it has no size). Each picture file (``out_dir/images/*.jpg``) is linked once; earlier
    ``*.jpg`` files there are removed. Also written: :data:`CONFUSION_FILE` (:meth:`ConfusionMatrix.to_json`) and
    :data:`BREAKDOWN_FILE` (:meth:`Breakdown.to_json`).

    Args:
        out_dir: the report folder (created if missing).
        entries: the test images with their ground truth and readings.
        metrics: metric name -> value (e.g. ``eir``, ``plate_precision``, ``char_accuracy``, ``mAP``).
        title: the page title.
        lineage: optional provenance (dataset version, git revision, config hash, model URI, ...).
        max_images: the most images to draw pictures for (>= 0).
        breakdown: the breakdown to show, when the caller has it already (e.g. from
            :func:`alpr.model.breakdown.breakdown_from_coco`, as the Test step does); by default it is computed
            from ``entries`` (their ``truth`` plates need ``layout``, and ``points`` for the angle).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``max_images`` < 0.
    """
    from jinja2 import Environment

    if max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in images_dir.glob("*.jpg"):
        stale.unlink()

    analysed = [(index, entry, _analyse(entry)) for index, entry in enumerate(entries)]
    analysed.sort(key=lambda item: (item[2]["exact"], item[0]))  # mistakes first, stable

    accumulator = BreakdownMetrics()
    pairs: list[tuple[str, str]] = []
    unreadable = 0
    rows = []
    for position, (index, entry, result) in enumerate(analysed):
        path = Path(entry.image_path)
        pairs.extend(plate_character_pairs(entry.truth or [], entry.reading))
        row = {
            "name": path.name,
            "path": str(path),
            "plates": result["plates"],
            "exact": result["exact"],
            "thumbnail": None,
            "error": None,
        }
        try:
            picture = _to_pil(path)
        except (OSError, ValueError) as exc:  # unreadable image: report it, keep going
            row["error"] = f"{type(exc).__name__}: {exc}"
            unreadable += 1
            rows.append(row)
            continue
        if breakdown is None:
            truth, reading = _breakdown_plates(entry)
            accumulator.add(truth, reading, picture.size, np.asarray(picture.convert("L")))
        if position < max_images:
            stem = f"{index:05d}_{_safe_name(path.stem)}"
            thumbnail = render_detections(picture, entry.reading, entry.truth, max_side=THUMBNAIL_MAX_SIDE)
            _save_jpeg(thumbnail, images_dir / f"{stem}.jpg", THUMBNAIL_JPEG_QUALITY)
            row["thumbnail"] = f"images/{stem}.jpg"
            for k, plate in enumerate(row["plates"]):
                crop = _crop(picture, plate["crop_box"])
                if crop is not None:
                    _save_jpeg(crop, images_dir / f"{stem}_p{k}.jpg", CROP_JPEG_QUALITY)
                    plate["crop"] = f"images/{stem}_p{k}.jpg"
        rows.append(row)

    matrix = confusion_matrix(pairs)
    result_breakdown = accumulator.result() if breakdown is None else breakdown
    statuses = [p["status"] for _, _, r in analysed for p in r["plates"]]
    summary = {
        "images": len(analysed),
        "images_exact": sum(1 for _, _, r in analysed if r["exact"]),
        "images_mistakes": sum(1 for _, _, r in analysed if not r["exact"]),
        "truth_plates": sum(r["n_truth"] for _, _, r in analysed),
        "exact_reads": statuses.count("exact"),
        "misread": statuses.count("misread"),
        "missed": statuses.count("not found"),
        "predicted_plates": sum(r["n_read"] for _, _, r in analysed),
        "extra": statuses.count("no such plate"),
    }
    env = Environment(autoescape=True, keep_trailing_newline=True)
    html = env.from_string(_TEMPLATE).render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary=summary,
        metrics=[(str(k), _format_value(v)) for k, v in (metrics or {}).items()],
        lineage=[(str(k), _format_lineage(v)) for k, v in (lineage or {}).items()],
        breakdown=_breakdown_view(result_breakdown),
        unreadable=unreadable if breakdown is None else 0,
        confusion=_confusion_view(matrix),
        missing=MISSING,
        rows=rows,
        max_images=max_images,
        omitted=len(rows) > max_images,
        thumb_side=THUMBNAIL_MAX_SIDE,
        crop_height=CROP_HEIGHT,
        colours={"green": GREEN, "red": RED, "truth": TRUTH_BLUE},
    )
    _write_atomic(out_dir / CONFUSION_FILE, json.dumps(matrix.to_json(), ensure_ascii=False) + "\n")
    _write_atomic(out_dir / BREAKDOWN_FILE, json.dumps(result_breakdown.to_json()) + "\n")
    index = out_dir / "index.html"
    _write_atomic(index, html)
    return index


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_LOCAL_IMAGE_REF = re.compile(r'(src|href)="(images/[^"/]+\.jpg)"')


def self_contained_html(report_dir: Path) -> str:
    """The report's ``index.html`` with every picture inlined as a ``data:image/jpeg;base64`` URI.

    For viewers that show a single file (the Kubeflow Pipelines UI renders an HTML artifact on its own, without
    the folder beside it). :func:`write_report` links each picture once, so each is inlined once: about 25-35 kB
    of base64 per 1280 x 720 test image with its plate crops. Links to pictures that do not exist are left as they
    are.

    Raises:
        FileNotFoundError: ``report_dir/index.html`` does not exist.
    """
    import base64

    report_dir = Path(report_dir)
    html = (report_dir / "index.html").read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        path = report_dir / match.group(2)
        if not path.is_file():
            return match.group(0)
        return f'{match.group(1)}="data:image/jpeg;base64,' + base64.b64encode(path.read_bytes()).decode("ascii") + '"'

    return _LOCAL_IMAGE_REF.sub(inline, html)
