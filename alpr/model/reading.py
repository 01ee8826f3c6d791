"""Plate reading: from the detector's boxes (plates and characters) to readings (``docs/PLATE_SPEC.md``).

The same code computes the ground-truth text of annotated plates (thresholds 0, polygon outlines) and reads the
model's detections, so annotation, evaluation and serving agree on what a plate says.

Steps (:func:`read_plates`):

1. Keep plates with ``score >= plate_score_thr`` and characters with ``score >= char_score_thr`` (NaN scores
   never pass). Unknown labels raise :class:`ValueError`.
2. De-duplicate characters class-agnostically into *slots*: where two boxes overlap with IoU >= ``char_nms_iou``
   (two classes predicted at one place) or one lies mostly inside the other (intersection over the smaller box
   >= ``char_containment``: a fragment of a glyph) the higher score is kept; the others stay as the slot's
   alternatives.
3. Assign each character to the plate whose outline (polygon when given, else box) contains the character's centre
   (PLATE_SPEC "A character belongs to the plate whose outline contains the character's centre"); when several
   plates contain it, the one with the smallest area. Characters in no plate are ignored.
4. Order each plate's characters geometrically: lines top to bottom, left to right within a line. The text
   direction is found by a small search over angles (around the polygon's long-edge direction when a polygon is
   known): at each angle the character centres are projected onto the text normal and split into lines wherever
   the gap exceeds :data:`LINE_GAP` × the median character height; the angle whose lines are the straightest
   (least spread along the normal, plus :data:`LINE_PENALTY` × height per extra line) wins. This is robust to
   in-plane rotation (plates turned in the image plane, e.g. by 15°) and perspective, where a fixed y threshold is not: the end
   characters of a 7-character one-line plate rotated by 15° differ in y by more than a character height. The
   number of lines is never forced from the plate's layout label: the detector might be wrong about it.
5. With ``syntax`` on, a plate of exactly 7 slots takes, at a slot whose best class is of the wrong kind for its
   position (letter at position 3, digits elsewhere), the best alternative of the right kind (:func:`_apply_syntax`).
   Plates of other lengths are reported as detected.
6. Report every kept plate with at least ``min_characters`` characters (0, the default, reports even plates with no
   characters: text ``""``, valid false; served readings use :data:`MIN_REPORTED_CHARACTERS`), ``valid`` from
   :func:`alpr.spec.is_valid_text`, sorted by descending score (ties keep the input order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alpr import spec

__all__ = [
    "Detection",
    "read_plates",
    "read_arrays",
    "plate_texts",
    "LINE_GAP",
    "LINE_PENALTY",
    "MIN_REPORTED_CHARACTERS",
]

#: Split characters into a new line where consecutive centres (projected on the text normal) are further apart
#: than this many median character heights.
LINE_GAP: float = 0.55
#: Cost of one extra line, in median character heights, when choosing the text direction (keeps a one-line plate
#: from being "explained" as several short lines at a wrong angle).
LINE_PENALTY: float = 0.5
#: Text directions searched, in degrees either side of the prior direction (0°, or the polygon's long edges).
ANGLE_SEARCH_DEG: float = 30.0
#: A model's reading reports a plate only when at least this many characters were read in it. A plate box in which
#: no character is read tells the user nothing, and is mostly background: of the two-stage model's 98 unmatched
#: predictions on its test split, 59 lay on no plate, most of them with no character read; leaving such plates out
#: raised its plate precision from 0.542 to 0.635 with EIR unchanged (docs/detection_design.md, "Where the rest of
#: the precision goes"). Ground truth is read with 0: an annotated plate is a plate whatever it shows.
MIN_REPORTED_CHARACTERS: int = 1
ANGLE_STEP_DEG: float = 0.5

_BOX_DECIMALS = 2
_SCORE_DECIMALS = 4

Box = tuple[float, float, float, float]
Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Detection:
    """One detected (or annotated) object.

    Attributes:
        label: One of :data:`alpr.spec.CLASSES` (a character ``0``..``9``, ``A``..``E`` or a plate label).
        box: ``(x1, y1, x2, y2)`` in pixels of the original image, x1, y1 top-left.
        score: Confidence in [0, 1]; 1.0 for ground truth. NaN is allowed and never passes a threshold.
        polygon: Ground-truth outline ``((x, y), ...)`` in pixels (3 points or more); when set, containment of
            character centres (and the plate's area, and its text direction prior) use it instead of ``box``.

    Raises:
        ValueError: ``label`` is not one of the detector's classes, ``box`` does not have 4 numbers, or
            ``polygon`` has fewer than 3 points.
    """

    label: str
    box: Box
    score: float = 1.0
    polygon: Polygon | None = None

    def __post_init__(self) -> None:
        if self.label not in spec.CLASSES:
            raise ValueError(f"unknown label {self.label!r}; expected one of {', '.join(spec.CLASSES)}")
        box = tuple(float(v) for v in self.box)
        if len(box) != 4:
            raise ValueError(f"box must be (x1, y1, x2, y2), got {self.box!r}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.polygon is not None:
            polygon = tuple((float(p[0]), float(p[1])) for p in self.polygon)
            if len(polygon) < 3:
                raise ValueError(f"polygon needs at least 3 points, got {len(polygon)}")
            object.__setattr__(self, "polygon", polygon)


# --------------------------------------------------------------------------------------------------- geometry


def _finite_box(box: Box) -> bool:
    return all(math.isfinite(v) for v in box)


def _iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0) + max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) - inter
    return inter / union if union > 0 else 0.0


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _polygon_area(poly: Polygon) -> float:
    s = 0.0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        s += x0 * y1 - x1 * y0
    return abs(s) / 2.0


def _in_polygon(x: float, y: float, poly: Polygon) -> bool:
    """Point in polygon (even-odd rule); points on an edge count as inside."""
    inside = False
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        # On the edge: collinear and within the segment's bounds.
        cross = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
        scale = max(abs(x1 - x0), abs(y1 - y0), 1.0)
        if (
            abs(cross) <= 1e-9 * scale * scale
            and min(x0, x1) - 1e-9 <= x <= max(x0, x1) + 1e-9
            and min(y0, y1) - 1e-9 <= y <= max(y0, y1) + 1e-9
        ):
            return True
        if (y0 > y) != (y1 > y):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            if x < x_cross:
                inside = not inside
    return inside


def _contains(plate: Detection, x: float, y: float) -> bool:
    if plate.polygon is not None:
        return _in_polygon(x, y, plate.polygon)
    x1, y1, x2, y2 = plate.box
    return x1 <= x <= x2 and y1 <= y <= y2


def _area(plate: Detection) -> float:
    if plate.polygon is not None:
        return _polygon_area(plate.polygon)
    x1, y1, x2, y2 = plate.box
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def _polygon_direction(poly: Polygon) -> float:
    """Text direction prior (radians) from a plate outline: the mean of its near-horizontal edges.

    Edges are oriented left to right and summed (so longer edges weigh more); edges steeper than 45° (the plate's
    short sides) are left out. For a perspective-skewed quadrilateral this averages its top and bottom edges.
    Returns 0.0 when the outline has no near-horizontal edge.
    """
    sx = sy = 0.0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        dx, dy = x1 - x0, y1 - y0
        if dx < 0:
            dx, dy = -dx, -dy
        if abs(dy) <= dx and dx > 0:
            sx += dx
            sy += dy
    return math.atan2(sy, sx) if sx > 0 else 0.0


def _reading_order(boxes: list[Box], prior: float) -> list[int]:
    """Indices of ``boxes`` (characters of one plate) in reading order: lines top to bottom, left to right.

    ``prior`` is the expected text direction in radians (image coordinates, y down); the direction actually used
    is searched within ±:data:`ANGLE_SEARCH_DEG` of it (see the module docstring).
    """
    n = len(boxes)
    if n <= 1:
        return list(range(n))
    b = np.asarray(boxes, dtype=np.float64)
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0], axis=1)
    heights = b[:, 3] - b[:, 1]
    h = float(np.median(heights))
    if not h > 0:
        h = max(float(np.median(b[:, 2] - b[:, 0])), 1e-6)
    gap_thr = LINE_GAP * h

    offsets = np.deg2rad(np.arange(-ANGLE_SEARCH_DEG, ANGLE_SEARCH_DEG + 1e-9, ANGLE_STEP_DEG))
    angles = prior + offsets  # (A,)
    # Coordinate along the text normal (pointing "down" the plate) for each angle and character: (A, n).
    v = -np.sin(angles)[:, None] * centres[None, :, 0] + np.cos(angles)[:, None] * centres[None, :, 1]
    v_sorted = np.sort(v, axis=1)
    gaps = np.diff(v_sorted, axis=1)
    splits = gaps > gap_thr
    spread = (v_sorted[:, -1] - v_sorted[:, 0]) - np.where(splits, gaps, 0.0).sum(axis=1)
    cost = spread + LINE_PENALTY * h * splits.sum(axis=1) + 1e-4 * h * np.abs(np.rad2deg(offsets))
    best = int(np.argmin(cost))
    theta = float(angles[best])

    u = centres[:, 0] * math.cos(theta) + centres[:, 1] * math.sin(theta)
    vv = v[best]
    order_v = np.argsort(vv, kind="stable")
    lines: list[list[int]] = [[int(order_v[0])]]
    for prev, cur in zip(order_v[:-1], order_v[1:]):
        if vv[cur] - vv[prev] > gap_thr:
            lines.append([])
        lines[-1].append(int(cur))
    result: list[int] = []
    for line in lines:  # already top to bottom: lines come from v sorted ascending
        result.extend(sorted(line, key=lambda i: (u[i], i)))
    return result


# ---------------------------------------------------------------------------------------------------- reading


def _passes(score: float, thr: float) -> bool:
    return score >= thr  # False for NaN


def _io_min(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area (1.0 when one box lies inside the other)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min(max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0), max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))
    return iw * ih / smaller if smaller > 0 else 0.0


def _same_place(a: Box, b: Box, iou_thr: float | None, containment: float | None) -> bool:
    """Whether two character boxes cover the same glyph: IoU >= ``iou_thr`` or, when ``containment`` is set,
    intersection over the smaller box >= ``containment`` (a fragment of a glyph detected inside the glyph's box)."""
    if iou_thr is not None and _iou(a, b) >= iou_thr:
        return True
    return containment is not None and _io_min(a, b) >= containment


@dataclass
class _Slot:
    """One character position: the kept detection and the other classes detected at the same place."""

    best: Detection
    alternatives: list[Detection]


def _character_slots(
    chars: list[Detection], alternates: list[Detection], iou_thr: float | None, containment: float | None
) -> list[_Slot]:
    """Class-agnostic NMS into slots.

    ``chars`` (score >= the character threshold) are visited by descending score (ties: input order); each one
    that is not at the same place (:func:`_same_place`) as an already kept one opens a slot. Every detection of
    ``chars`` and ``alternates`` (lower-scored candidates) that is at the same place as a slot's detection
    becomes one of that slot's alternatives (the slot it overlaps most by IoU). With both criteria ``None``
    every character is its own slot.
    """
    order = sorted(range(len(chars)), key=lambda i: (-chars[i].score, i))
    slots: list[_Slot] = []
    for i in order:
        c = chars[i]
        if (
            iou_thr is None
            and containment is None
            or not any(_same_place(c.box, s.best.box, iou_thr, containment) for s in slots)
        ):
            slots.append(_Slot(c, []))
    if iou_thr is None and containment is None:
        return slots
    kept = {id(s.best) for s in slots}
    for c in [*chars, *alternates]:
        if id(c) in kept:
            continue
        near = [
            (k, _iou(c.box, s.best.box))
            for k, s in enumerate(slots)
            if _same_place(c.box, s.best.box, iou_thr, containment)
        ]
        if near:
            slots[max(near, key=lambda t: t[1])[0]].alternatives.append(c)
    return slots


def _apply_syntax(slots: list[_Slot]) -> list[Detection]:
    """Choose each slot's character with the plate syntax when the plate has exactly the canonical length.

    PLATE_SPEC's canonical text is ``^[0-9]{2}[A-E][0-9]{4}$``: position 3 is a letter, the rest are digits. For a
    plate read with exactly 7 slots, a slot whose best class is of the wrong kind takes its best-scored
    alternative of the right kind (detected at the same place), when there is one. Plates with another number of
    characters are left as detected (reported ``valid: false``): a missing or extra character is never
    invented or dropped. This is the pattern-constrained decoding of classic ALPR post-processing (e.g.
    OpenALPR's per-country plate templates).
    """
    chosen = [s.best for s in slots]
    if len(slots) != spec.PLATE_LENGTH:
        return chosen
    for pos, slot in enumerate(slots):
        want_letter = spec.POSITION_IS_LETTER[pos]
        if slot.best.label.isalpha() == want_letter:
            continue
        fits = [a for a in slot.alternatives if a.label.isalpha() == want_letter]
        if fits:
            chosen[pos] = max(fits, key=lambda a: a.score)
    return chosen


def _round_box(box: Box) -> list[float]:
    return [round(float(v), _BOX_DECIMALS) for v in box]


def read_plates(
    detections: Sequence[Detection],
    *,
    plate_score_thr: float = 0.3,
    char_score_thr: float = 0.3,
    char_nms_iou: float | None = 0.5,
    char_containment: float | None = 0.7,
    syntax: bool = True,
    alt_score_thr: float = 0.05,
    plate_nms_iou: float | None = None,
    min_characters: int = 0,
) -> dict[str, Any]:
    """Read the plates of one image from its detections.

    Args:
        detections: Plates and characters of one image, boxes in pixels (any order). Detections with a
            non-finite box coordinate are ignored.
        plate_score_thr: Keep plates with ``score >= plate_score_thr`` (use 0 for ground truth).
        char_score_thr: Keep characters with ``score >= char_score_thr`` (use 0 for ground truth).
        char_nms_iou: Class-agnostic de-duplication of characters: of two characters whose boxes overlap with
            IoU >= this, the lower-scored one is dropped. ``None`` turns it off.
        char_containment: Also de-duplicate two characters when their intersection covers at least this fraction
            of the smaller box (a fragment detected inside a glyph, which IoU misses). ``None`` turns it off.
        syntax: For plates with exactly 7 characters, take a letter at position 3 and digits elsewhere from the
            classes detected at the same place when the best one is of the wrong kind (:func:`_apply_syntax`).
        alt_score_thr: Lowest score of such an alternative class (only used at places where a character with
            ``score >= char_score_thr`` was found).
        plate_nms_iou: Optional class-agnostic de-duplication of plates (e.g. one plate detected as both layouts);
            ``None`` (the default) keeps every plate above the threshold.
        min_characters: Report only plates in which at least this many characters were read (after
            de-duplication); 0 reports every plate, as ground truth needs. Models read with
            :data:`MIN_REPORTED_CHARACTERS`.

    Returns:
        The reading, as PLATE_SPEC.md "A reading": ``{"plates": [{"text", "layout", "valid", "box", "score",
        "characters": [{"char", "box", "score"}, ...]}, ...]}``, plates by descending score (ties keep the input
        order), characters in reading order. Boxes are ``[x1, y1, x2, y2]`` pixels rounded to 2 decimals, scores
        rounded to 4. A plate with no characters has text ``""`` (reported only when ``min_characters`` is 0); a
        plate with a missing or extra character is reported with ``valid`` false, never dropped. ``layout`` comes
        from the plate's label.

    Raises:
        ValueError: a detection's label is not one of :data:`alpr.spec.CLASSES` (raised by :class:`Detection`), or
            ``min_characters`` is negative.
    """
    if min_characters < 0:
        raise ValueError(f"min_characters must be >= 0, got {min_characters}")
    plates: list[tuple[int, Detection]] = []
    chars: list[Detection] = []
    alternates: list[Detection] = []
    for i, d in enumerate(detections):
        if not isinstance(d, Detection):
            raise TypeError(f"detection {i} is a {type(d).__name__}, not a Detection")
        if not _finite_box(d.box):
            continue
        if spec.is_plate(d.label):
            if _passes(d.score, plate_score_thr):
                plates.append((i, d))
        elif _passes(d.score, char_score_thr):
            chars.append(d)
        elif syntax and _passes(d.score, alt_score_thr):
            alternates.append(d)

    plates.sort(key=lambda t: (-t[1].score, t[0]))
    if plate_nms_iou is not None:
        kept_plates: list[tuple[int, Detection]] = []
        for i, p in plates:
            if all(_iou(p.box, k.box) < plate_nms_iou for _, k in kept_plates):
                kept_plates.append((i, p))
        plates = kept_plates

    slots = _character_slots(chars, alternates, char_nms_iou, char_containment)

    members: list[list[_Slot]] = [[] for _ in plates]
    areas = [_area(p) for _, p in plates]
    for c in slots:
        cx, cy = _centre(c.best.box)
        best: int | None = None
        for k, (_, p) in enumerate(plates):
            if _contains(p, cx, cy) and (best is None or areas[k] < areas[best]):
                best = k
        if best is not None:
            members[best].append(c)

    out: list[dict[str, Any]] = []
    for (_, p), cs in zip(plates, members):
        prior = _polygon_direction(p.polygon) if p.polygon is not None else 0.0
        ordered_slots = [cs[i] for i in _reading_order([c.best.box for c in cs], prior)]
        ordered = _apply_syntax(ordered_slots) if syntax else [c.best for c in ordered_slots]
        if len(ordered) < min_characters:
            continue
        text = "".join(c.label for c in ordered)
        out.append(
            {
                "text": text,
                "layout": spec.LAYOUT_OF_LABEL[p.label],
                "valid": spec.is_valid_text(text),
                "box": _round_box(p.box),
                "score": round(p.score, _SCORE_DECIMALS),
                "characters": [
                    {"char": c.label, "box": _round_box(c.box), "score": round(c.score, _SCORE_DECIMALS)}
                    for c in ordered
                ],
            }
        )
    return {"plates": out}


def read_arrays(bboxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, **kw: Any) -> dict[str, Any]:
    """Read plates from detector output arrays (e.g. mmdetection's ``pred_instances`` as numpy).

    Args:
        bboxes: ``(N, 4)`` float, ``x1, y1, x2, y2`` in pixels of the original image. ``(0,)`` or ``(0, 4)`` when
            there are no detections.
        labels: ``(N,)`` int, indices into :data:`alpr.spec.CLASSES`.
        scores: ``(N,)`` float confidences (NaN never passes a threshold).
        **kw: Passed on to :func:`read_plates` (thresholds, ``char_nms_iou``, ``plate_nms_iou``,
            ``min_characters``).

    Returns:
        The reading (see :func:`read_plates`).

    Raises:
        ValueError: shapes disagree, ``bboxes`` is not ``(N, 4)``, or a label is outside ``0..len(CLASSES)-1``.
    """
    b = np.asarray(bboxes, dtype=np.float64)
    lab = np.asarray(labels).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"bboxes must have shape (N, 4), got {b.shape}")
    if not (len(b) == len(lab) == len(sc)):
        raise ValueError(f"bboxes, labels and scores disagree in length: {len(b)}, {len(lab)}, {len(sc)}")
    if len(lab) and not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.equal(np.mod(lab, 1), 0)):
            raise ValueError("labels must be integer class indices")
        lab = lab.astype(np.int64)
    if len(lab) and (lab.min() < 0 or lab.max() >= len(spec.CLASSES)):
        raise ValueError(f"label index out of range 0..{len(spec.CLASSES) - 1}: {lab.min()}..{lab.max()}")
    dets = [
        Detection(spec.CLASSES[int(label)], (b[i, 0], b[i, 1], b[i, 2], b[i, 3]), float(sc[i]))
        for i, label in enumerate(lab)
    ]
    return read_plates(dets, **kw)


def plate_texts(reading: dict[str, Any]) -> list[str]:
    """The texts of a reading's plates, in the reading's order (descending score)."""
    return [p["text"] for p in reading.get("plates", [])]
