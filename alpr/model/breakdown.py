"""Plate metrics broken down by plate width, angle, layout and brightness (issue 14, "Measure outside the training
distribution").

The metrics are those of ``docs/PLATE_SPEC.md`` "Metrics" (:mod:`alpr.model.metrics`), plus recall, computed per
*bucket* of four groupings of the plates:

- ``width``: the plate box's width over the image width (:data:`WIDTH_BUCKETS`: < 5 %, 5-10 %, 10-20 %, >= 20 %);
- ``angle``: the plate's angle to the camera, estimated from its outline (:data:`ANGLE_BUCKETS`, see
  :func:`plate_angles`);
- ``layout``: ``one_line`` / ``two_line`` (:data:`alpr.spec.LAYOUTS`; any other layout string gets its own bucket);
- ``brightness``: the mean grey level inside the plate box (:data:`BRIGHTNESS_BUCKETS`, see
  :func:`plate_brightness`).

**Which plates are in a bucket.** Predicted and ground-truth plates are matched once per image over all its plates,
exactly as PLATE_SPEC says (:func:`alpr.model.metrics.match_plates`). A ground-truth plate falls in the bucket of its
own attributes. A *matched* prediction counts in its ground-truth plate's bucket, in every grouping. An *unmatched*
prediction counts in the width bucket of its own box and the layout bucket of its own ``layout``; it has no angle
(a reading has no outline) and no brightness bucket (it is not a plate we know the truth of), so it counts in no
angle or brightness bucket. Hence, per bucket:

- ``recall`` = matched ground-truth plates / ground-truth plates (a plate is *found*, whatever its text);
- ``eir`` = ground-truth plates read exactly / ground-truth plates;
- ``char_accuracy`` as PLATE_SPEC defines it, over the bucket's ground-truth plates;
- ``plate_precision`` = predictions read exactly / predictions in the bucket. In the ``width`` and ``layout``
  groupings that is PLATE_SPEC's plate precision (false detections included). **In the ``angle`` and
  ``brightness`` groupings the bucket holds matched predictions only, so ``plate_precision`` there is the share of
  found plates that are read exactly (false detections are not in it)**;
- the counts ``n_truth``, ``n_predicted``, ``n_matched``, ``n_exact``.

Each bucket keeps one :class:`alpr.model.metrics.PlateMetrics` fed with the bucket's ground-truth plates and
predictions; because matching is greedy by descending score (each prediction in turn takes the best free
ground-truth plate), leaving out the other buckets' plates and the predictions matched to them changes no choice
within the bucket, so matching the subset again gives exactly the image's pairs (checked at run time) and the
formulas stay those of :mod:`alpr.model.metrics`. Undefined ratios are NaN (a bucket without ground-truth plates
has NaN recall, EIR and character accuracy; without predictions, NaN plate precision). A ground-truth plate whose
attribute is unknown (NaN: no outline for the angle, no image for the brightness) falls in no bucket of that
grouping, nor does its matched prediction; :attr:`Breakdown.unassigned` counts those plates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from alpr import spec
from alpr.model.metrics import MATCH_IOU, PlateMetrics, match_plates

__all__ = [
    "ANGLE_BUCKETS",
    "BRIGHTNESS_BUCKETS",
    "BRIGHT_FROM",
    "Breakdown",
    "BreakdownMetrics",
    "Bucket",
    "DARK_BELOW",
    "FIGURES",
    "GROUPS",
    "GROUP_TITLES",
    "PlateAttributes",
    "WIDTH_BUCKETS",
    "breakdown_from_coco",
    "bucket_of",
    "format_breakdown",
    "plate_angles",
    "plate_attributes",
    "plate_brightness",
]


@dataclass(frozen=True)
class Bucket:
    """A range of one plate attribute: a value ``v`` is in the bucket when ``low <= v < high`` (never when NaN).

    Attributes:
        name: shown in tables (``"5-10%"``, ``"<10°"``, ``"dark"``).
        low, high: the range, in the attribute's unit (a fraction of the image width, degrees, grey levels).
        key: an ASCII name for flat metric keys (``"5_10"``): :meth:`Breakdown.scalars`.
    """

    name: str
    low: float
    high: float
    key: str = ""

    def contains(self, value: float) -> bool:
        """Whether ``low <= value < high`` (False for NaN)."""
        return self.low <= value < self.high


#: The groupings, in the order tables are printed.
GROUPS: Final[tuple[str, ...]] = ("width", "angle", "layout", "brightness")
#: Plate box width / image width (a fraction; a roadside camera sees plates of 3-15 % of the frame, issue 14).
WIDTH_BUCKETS: Final[tuple[Bucket, ...]] = (
    Bucket("<5%", 0.0, 0.05, "lt5"),
    Bucket("5-10%", 0.05, 0.10, "5_10"),
    Bucket("10-20%", 0.10, 0.20, "10_20"),
    Bucket(">=20%", 0.20, math.inf, "ge20"),
)
#: The plate's angle to the camera in degrees: the larger of its in-plane and out-of-plane angles (:func:`plate_angles`).
ANGLE_BUCKETS: Final[tuple[Bucket, ...]] = (
    Bucket("<10°", 0.0, 10.0, "lt10"),
    Bucket("10-20°", 10.0, 20.0, "10_20"),
    Bucket("20-30°", 20.0, 30.0, "20_30"),
    Bucket(">=30°", 30.0, math.inf, "ge30"),
)
#: Mean grey level (0-255) of the plate box below which a plate is ``dark``, and from which it is ``bright``. These
#: are this project's choices, not a standard, placed with Adams' zone system (zones one stop apart, zone V = 18 %
#: reflectance, about 118 in 8-bit sRGB): 70 is near the boundary of zones III and IV (about 72, "dark materials"),
#: 185 a little below that of zones VI and VII (about 192, "light materials"). A normally exposed plate (a light face
#: with dark characters) lies between; a plate at night or in shadow falls below, an over-exposed one above. On 150
#: frames of :data:`alpr.data.synth.ROAD` (seed 555) the plates of normally exposed frames fell 89 % in ``normal``,
#: those of over-exposed frames 75 % in ``bright``, those of night frames 49 % in ``dark`` (the synthesizer lights a
#: plate at night, as a plate lamp and retro-reflection do).
DARK_BELOW: Final = 70.0
BRIGHT_FROM: Final = 185.0
BRIGHTNESS_BUCKETS: Final[tuple[Bucket, ...]] = (
    Bucket("dark", 0.0, DARK_BELOW, "dark"),
    Bucket("normal", DARK_BELOW, BRIGHT_FROM, "normal"),
    Bucket("bright", BRIGHT_FROM, math.inf, "bright"),
)
_BUCKETS: Final[dict[str, tuple[Bucket, ...]]] = {
    "width": WIDTH_BUCKETS,
    "angle": ANGLE_BUCKETS,
    "brightness": BRIGHTNESS_BUCKETS,
}
#: Table titles of the groupings.
GROUP_TITLES: Final[dict[str, str]] = {
    "width": "plate width / image width",
    "angle": "plate angle, estimated from the outline (larger of in-plane and out-of-plane); predicted: found "
    "plates only",
    "layout": "layout",
    "brightness": f"mean grey level in the plate box (dark < {DARK_BELOW:g}, bright >= {BRIGHT_FROM:g}); predicted: "
    "found plates only",
}
#: The per-bucket figures, in table order.
FIGURES: Final[tuple[str, ...]] = (
    "n_truth",
    "recall",
    "eir",
    "plate_precision",
    "char_accuracy",
    "n_predicted",
    "n_matched",
    "n_exact",
)
_COUNTS: Final = frozenset({"n_truth", "n_predicted", "n_matched", "n_exact", "n_images"})


def bucket_of(value: float, buckets: Sequence[Bucket]) -> str | None:
    """The name of the first bucket of ``buckets`` holding ``value``, or None (NaN, or outside every bucket)."""
    for b in buckets:
        if b.contains(value):
            return b.name
    return None


# ------------------------------------------------------------------------------------------------ attributes


@dataclass(frozen=True)
class PlateAttributes:
    """What a plate's buckets are decided by. NaN where unknown.

    Attributes:
        width_fraction: box width / image width (``max(x2 - x1, 0) / W``).
        angle_deg: ``max(roll_deg, tilt_deg)``, degrees (:func:`plate_angles`).
        brightness: mean grey level 0-255 inside the box (:func:`plate_brightness`).
        layout: the plate's layout (``"one_line"``, ``"two_line"``).
        roll_deg: in-plane rotation, degrees in [0, 45].
        tilt_deg: out-of-plane tilt, degrees in [0, 90].
    """

    width_fraction: float
    angle_deg: float
    brightness: float
    layout: str
    roll_deg: float = math.nan
    tilt_deg: float = math.nan


def _ordered_quad(points: np.ndarray) -> np.ndarray:
    """4 corners ordered top-left, top-right, bottom-right, bottom-left (image coordinates, y down).

    The corners are sorted clockwise on screen around their centroid; the pair of opposite edges closer to horizontal
    is the plate's top and bottom (so a plate turned by more than 45° in the image is read as turned the other way);
    the upper of the two is the top edge.
    """
    c = points.mean(axis=0)
    q = points[np.argsort(np.arctan2(points[:, 1] - c[1], points[:, 0] - c[0]), kind="stable")]
    edges = np.roll(q, -1, axis=0) - q  # edge k runs from q[k] to q[k + 1]
    slope = np.abs(edges[:, 1]) / np.maximum(np.hypot(edges[:, 0], edges[:, 1]), 1e-12)  # |sin| of its angle
    if slope[1] + slope[3] < slope[0] + slope[2]:
        q = np.roll(q, -1, axis=0)
    if q[2:4, 1].mean() < q[0:2, 1].mean():
        q = np.roll(q, -2, axis=0)
    return q


def plate_angles(points: Sequence[Sequence[float]] | None, layout: str) -> tuple[float, float]:
    """Estimate a plate's in-plane rotation (roll) and out-of-plane tilt from its outline, in degrees.

    An estimate: it assumes the outline is the plate's physical rectangle (:data:`alpr.spec.PLATE_SIZE_MM` for the
    layout) seen by an affine (weak-perspective) camera, i.e. a plate small against its distance, so perspective
    taper is averaged out. An outline drawn around a plate holder, or a plate of another size, reads as tilted. For
    a plate on the optical axis of a pinhole camera (as :mod:`alpr.data.synth` draws its 3-D poses) the tilt is
    within 1.5° of the true one for plates up to 20 % of a 40-90° frame wide (tested); a very near plate at a wide
    angle reads a few degrees less tilted, and a plate far off the image centre of a wide-angle lens is judged
    against the optical axis rather than its line of sight.

    1. Outline → quadrilateral: a 4-point outline is used as is (corners ordered by :func:`_ordered_quad`); any
       other polygon of 3 points or more is replaced by its minimum-area rectangle (``cv2.minAreaRect``).
    2. ``u`` = mean of the top and bottom edges (left to right), ``v`` = mean of the left and right edges (top to
       bottom), in pixels.
    3. Roll = ``|atan2(u_y, u_x)|``, the angle of the text line to the image's x axis (in [0, 45]): the rotation a
       reader sees, which for a plate turned both ways (yaw and pitch) includes the slant that turn gives the
       text line.
    4. Tilt: ``M = [u / w_mm, v / h_mm]`` maps the plate's millimetres to image pixels. An affine camera maps a
       plane tilted by ``t`` from the image plane with singular values ``s`` and ``s·cos t`` (the tilt of the
       affine decomposition ``A = λ R(ψ) T_t R(φ)``, ``T_t = diag(1/cos t, 1)``: Morel & Yu, "ASIFT: a new
       framework for fully affine invariant image comparison", SIAM J. Imaging Sciences 2(2), 2009, section 2), so
       ``tilt = acos(σ_min / σ_max)``. For a plate turned about one axis only this is its yaw (width foreshortened
       against the nominal aspect) or its pitch (height foreshortened); for both, ``cos t = cos yaw · cos pitch``.

    Args:
        points: the outline ``[[x, y], ...]`` in pixels, or None.
        layout: the plate's layout, a key of :data:`alpr.spec.PLATE_SIZE_MM`.

    Returns:
        ``(roll_deg, tilt_deg)``: both NaN without an outline (None, fewer than 3 points, a non-finite
        coordinate, a degenerate outline); the tilt NaN for a layout without a nominal size.

    Raises:
        ValueError: ``points`` is not a list of ``[x, y]`` pairs.
    """
    nan = math.nan
    if points is None:
        return nan, nan
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return nan, nan
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"plate outline must be [[x, y], ...], got an array of shape {pts.shape}")
    if len(pts) < 3 or not np.isfinite(pts).all():
        return nan, nan
    if len(pts) != 4:
        import cv2

        pts = cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64)
    tl, tr, br, bl = _ordered_quad(pts)
    u = ((tr - tl) + (br - bl)) / 2.0
    v = ((bl - tl) + (br - tr)) / 2.0
    if not (np.hypot(*u) > 0 and np.hypot(*v) > 0):
        return nan, nan
    roll = abs(math.degrees(math.atan2(u[1], u[0])))
    size = spec.PLATE_SIZE_MM.get(layout)
    if size is None:
        return roll, nan
    sv = np.linalg.svd(np.column_stack([u / size[0], v / size[1]]), compute_uv=False)
    tilt = math.degrees(math.acos(min(max(float(sv[1] / sv[0]), 0.0), 1.0)))
    return roll, tilt


def plate_brightness(box: Sequence[float], image_gray: np.ndarray) -> float:
    """Mean grey level (0-255 for an 8-bit image) of the pixels inside ``box``.

    Every pixel the box touches counts (columns ``floor(x1)`` to ``ceil(x2) - 1``, rows likewise), clipped to the
    image. For a turned or tilted plate the box holds some background too.

    Args:
        box: ``[x1, y1, x2, y2]`` in pixels.
        image_gray: ``(H, W)`` grey image, e.g. ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` (ITU-R BT.601 luma).

    Returns:
        the mean, or NaN when the box is not finite or holds no pixel of the image.

    Raises:
        ValueError: ``image_gray`` is not 2-D.
    """
    img = np.asarray(image_gray)
    if img.ndim != 2:
        raise ValueError(f"image_gray must be a 2-D grey image (H, W), got shape {img.shape}")
    x1, y1, x2, y2 = (float(c) for c in box)
    if not all(math.isfinite(c) for c in (x1, y1, x2, y2)):
        return math.nan
    h, w = img.shape
    c0, c1 = min(max(math.floor(x1), 0), w), min(max(math.ceil(x2), 0), w)
    r0, r1 = min(max(math.floor(y1), 0), h), min(max(math.ceil(y2), 0), h)
    if c1 <= c0 or r1 <= r0:
        return math.nan
    return float(img[r0:r1, c0:c1].mean(dtype=np.float64))


def _field(plate: Mapping[str, Any], name: str, what: str) -> Any:
    try:
        return plate[name]
    except KeyError:
        raise KeyError(f"{what} has no {name!r} (keys: {', '.join(map(str, plate)) or 'none'})") from None


def _image_size(image_wh: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in image_wh)
    except (TypeError, ValueError):
        raise ValueError(f"image_wh must be (width, height) in pixels, got {image_wh!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"image_wh must be positive (width, height), got {image_wh!r}")
    return w, h


def _width_fraction(box: Sequence[float], image_w: int) -> float:
    x1, _, x2, _ = (float(c) for c in box)
    width = x2 - x1
    return max(width, 0.0) / image_w if math.isfinite(width) else math.nan


def plate_attributes(
    plate: Mapping[str, Any], image_wh: tuple[int, int], image_gray: np.ndarray | None = None
) -> PlateAttributes:
    """The attributes that put ``plate`` in its buckets.

    Args:
        plate: ``{"box": [x1, y1, x2, y2], "layout": str, "points": [[x, y], ...] (optional)}``, pixels (a COCO
            image record's ground-truth plate, or a reading's plate).
        image_wh: the image's ``(width, height)`` in pixels.
        image_gray: the image as ``(H, W)`` grey levels (brightness is NaN without it).

    Returns:
        the attributes; NaN where unknown (no ``points``: angle; no image: brightness; a non-finite box).

    Raises:
        KeyError: ``plate`` has no ``box`` or ``layout``.
        ValueError: ``image_wh`` is not a positive size, ``image_gray`` is not 2-D or its size is not
            ``image_wh``, or ``points`` is malformed.
    """
    w, h = _image_size(image_wh)
    box = _field(plate, "box", "plate")
    layout = str(_field(plate, "layout", "plate"))
    roll, tilt = plate_angles(plate.get("points"), layout)
    brightness = math.nan
    if image_gray is not None:
        shape = np.shape(image_gray)
        if len(shape) == 2 and (shape[1], shape[0]) != (w, h):
            raise ValueError(f"image_gray is {shape[1]}x{shape[0]} pixels but image_wh says {w}x{h}")
        brightness = plate_brightness(box, image_gray)
    return PlateAttributes(
        width_fraction=_width_fraction(box, w),
        angle_deg=max(roll, tilt) if not (math.isnan(roll) or math.isnan(tilt)) else math.nan,
        brightness=brightness,
        layout=layout,
        roll_deg=roll,
        tilt_deg=tilt,
    )


def _truth_buckets(a: PlateAttributes) -> dict[str, str | None]:
    return {
        "width": bucket_of(a.width_fraction, WIDTH_BUCKETS),
        "angle": bucket_of(a.angle_deg, ANGLE_BUCKETS),
        "layout": a.layout,
        "brightness": bucket_of(a.brightness, BRIGHTNESS_BUCKETS),
    }


# ------------------------------------------------------------------------------------------------ accumulating


def _summary(res: Mapping[str, Any]) -> dict[str, float]:
    """The bucket figures of :data:`FIGURES` from a :meth:`PlateMetrics.result`."""
    n_truth = int(res["n_truth"])
    return {
        "n_truth": n_truth,
        "recall": res["n_matched"] / n_truth if n_truth else math.nan,
        "eir": float(res["eir"]),
        "plate_precision": float(res["plate_precision"]),
        "char_accuracy": float(res["char_accuracy"]),
        "n_predicted": int(res["n_predicted"]),
        "n_matched": int(res["n_matched"]),
        "n_exact": int(res["n_exact"]),
    }


class BreakdownMetrics:
    """Accumulates the per-bucket plate metrics image by image (see the module docstring for what is counted where).

    Example::

        m = BreakdownMetrics()
        for truth_plates, reading, (w, h), grey in images:
            m.add(truth_plates, reading, (w, h), grey)
        print(format_breakdown(m.result()))

    Args:
        iou_thr: Box IoU needed for a match (PLATE_SPEC: 0.5).
    """

    def __init__(self, iou_thr: float = MATCH_IOU) -> None:
        self.iou_thr = float(iou_thr)
        self._overall = PlateMetrics(self.iou_thr)
        self._acc: dict[str, dict[str, PlateMetrics]] = {
            "width": {b.name: PlateMetrics(self.iou_thr) for b in WIDTH_BUCKETS},
            "angle": {b.name: PlateMetrics(self.iou_thr) for b in ANGLE_BUCKETS},
            "layout": {name: PlateMetrics(self.iou_thr) for name in spec.LAYOUTS},
            "brightness": {b.name: PlateMetrics(self.iou_thr) for b in BRIGHTNESS_BUCKETS},
        }
        self._unassigned = dict.fromkeys(GROUPS, 0)

    def add(
        self,
        truth_plates: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        reading: Mapping[str, Any],
        image_wh: tuple[int, int],
        image_gray: np.ndarray | None = None,
    ) -> None:
        """Add one image.

        Args:
            truth_plates: the image's ground-truth plates, each ``{"box", "text", "layout", "points" (optional)}``
                (a COCO image record's ``plates``); a ground-truth reading ``{"plates": [...]}`` is accepted too.
            reading: the model's reading of the image (PLATE_SPEC "A reading"): ``{"plates": [{"box", "text",
                "score", "layout", ...}, ...]}``.
            image_wh: the image's ``(width, height)`` in pixels.
            image_gray: the image as ``(H, W)`` grey levels, for the brightness grouping (None: its plates are
                unassigned there).

        Raises:
            KeyError: a plate lacks ``box``, ``text``, ``layout`` (or, predicted, ``score``), or ``reading`` lacks
                ``plates``.
            ValueError: see :func:`plate_attributes`.
        """
        truth = list(truth_plates["plates"]) if isinstance(truth_plates, Mapping) else list(truth_plates)
        preds = list(_field(reading, "plates", "reading"))
        for i, t in enumerate(truth):
            for name in ("box", "text", "layout"):
                _field(t, name, f"ground-truth plate {i}")
        for j, p in enumerate(preds):
            for name in ("box", "text", "score", "layout"):
                _field(p, name, f"predicted plate {j}")
        w, _ = _image_size(image_wh)
        pairs = match_plates(
            [(t["box"], str(t["text"])) for t in truth],
            [(p["box"], str(p["text"]), float(p["score"])) for p in preds],
            self.iou_thr,
        )
        truth_of = {j: i for i, j in pairs}
        truth_buckets = [_truth_buckets(plate_attributes(t, image_wh, image_gray)) for t in truth]
        for group in GROUPS:
            members: dict[str, tuple[list[int], list[int]]] = {}
            for i, buckets in enumerate(truth_buckets):
                name = buckets[group]
                if name is None:
                    self._unassigned[group] += 1
                else:
                    members.setdefault(name, ([], []))[0].append(i)
            for j, p in enumerate(preds):
                if j in truth_of:
                    name = truth_buckets[truth_of[j]][group]
                elif group == "width":
                    name = bucket_of(_width_fraction(p["box"], w), WIDTH_BUCKETS)
                elif group == "layout":
                    name = str(p["layout"])
                else:
                    name = None  # an unmatched prediction has no angle or brightness bucket
                if name is not None:
                    members.setdefault(name, ([], []))[1].append(j)
            for name, (ti, pj) in members.items():
                acc = self._acc[group].setdefault(name, PlateMetrics(self.iou_thr))
                before = acc.n_matched
                acc.add([truth[i] for i in ti], {"plates": [preds[j] for j in pj]})
                expected = sum(truth_buckets[i][group] == name for i, _ in pairs)
                if acc.n_matched - before != expected:  # matching a bucket's subset must repeat the image's pairs
                    raise RuntimeError(
                        f"{group} bucket {name!r}: {acc.n_matched - before} matches in the bucket, {expected} in "
                        "the image; alpr.model.metrics.match_plates is no longer greedy by score"
                    )
        self._overall.add(truth, {"plates": preds})

    def result(self) -> Breakdown:
        """The breakdown so far (every bucket of every grouping, empty ones with zero counts and NaN ratios)."""
        overall = self._overall.result()
        return Breakdown(
            groups={g: {name: _summary(acc.result()) for name, acc in self._acc[g].items()} for g in GROUPS},
            overall={**_summary(overall), "n_images": int(overall["n_images"])},
            unassigned=dict(self._unassigned),
        )


# ------------------------------------------------------------------------------------------------ the result


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _from_json_value(key: str, v: Any) -> float:
    if v is None:
        return math.nan
    return int(v) if key in _COUNTS else float(v)


@dataclass(frozen=True)
class Breakdown:
    """Plate metrics per grouping and bucket.

    Attributes:
        groups: ``{group: {bucket name: {figure: value}}}``, groups :data:`GROUPS`, buckets in table order (for
            ``layout``: :data:`alpr.spec.LAYOUTS`, then any other layout seen), figures :data:`FIGURES` (ratios
            as floats, NaN where undefined; counts as ints).
        overall: the same figures over all plates, plus ``n_images``.
        unassigned: per group, ground-truth plates in no bucket (attribute unknown: NaN).
    """

    groups: dict[str, dict[str, dict[str, float]]]
    overall: dict[str, float] = field(default_factory=dict)
    unassigned: dict[str, int] = field(default_factory=dict)

    def table(self, group: str) -> list[dict[str, Any]]:
        """Rows ``{"bucket": name, **figures}`` of one grouping, in bucket order.

        Raises:
            KeyError: ``group`` is not one of the breakdown's groups.
        """
        if group not in self.groups:
            raise KeyError(f"no grouping {group!r}; expected one of {', '.join(self.groups)}")
        return [{"bucket": name, **figures} for name, figures in self.groups[group].items()]

    def scalars(self, figures: Sequence[str] = ("recall", "eir"), group: str = "width") -> dict[str, float]:
        """Flat ``{f"{figure}_{group}_{bucket key}": value}`` (e.g. ``recall_width_5_10``) for one grouping with
        :class:`Bucket` keys (``width``, ``angle``, ``brightness``); NaN where undefined.

        Raises:
            KeyError: ``group`` has no bucket keys, or a figure is unknown.
        """
        if group not in _BUCKETS:
            raise KeyError(f"grouping {group!r} has no bucket keys; use one of {', '.join(_BUCKETS)}")
        out = {}
        for b in _BUCKETS[group]:
            row = self.groups[group][b.name]
            for figure in figures:
                if figure not in row:
                    raise KeyError(f"unknown figure {figure!r}; expected one of {', '.join(FIGURES)}")
                out[f"{figure}_{group}_{b.key}"] = float(row[figure])
        return out

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON form (NaN → None): ``{"groups": ..., "overall": ..., "unassigned": ...}``."""
        return {
            "groups": {
                g: {name: {k: _json_value(v) for k, v in figs.items()} for name, figs in buckets.items()}
                for g, buckets in self.groups.items()
            },
            "overall": {k: _json_value(v) for k, v in self.overall.items()},
            "unassigned": dict(self.unassigned),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Breakdown:
        """Read :meth:`to_json`'s form back (None → NaN), groups and buckets in table order again (a JSON file
        written with sorted keys loses it); other keys of ``data`` are ignored.

        Raises:
            KeyError: ``groups`` is missing.
        """
        groups = _field(data, "groups", "breakdown")
        return cls(
            groups={
                g: {
                    name: {k: _from_json_value(k, v) for k, v in groups[g][name].items()}
                    for name in _in_order(groups[g], _table_order(g))
                }
                for g in _in_order(groups, GROUPS)
            },
            overall={k: _from_json_value(k, v) for k, v in data.get("overall", {}).items()},
            unassigned={g: int(n) for g, n in data.get("unassigned", {}).items()},
        )


def _table_order(group: str) -> tuple[str, ...]:
    """The known bucket names of a grouping, in table order."""
    if group == "layout":
        return spec.LAYOUTS
    return tuple(b.name for b in _BUCKETS.get(group, ()))


def _in_order(keys: Mapping[str, Any], first: Sequence[str]) -> list[str]:
    """``first`` (those in ``keys``), then the other keys in their order."""
    return [k for k in first if k in keys] + [k for k in keys if k not in first]


_HEADERS: Final[dict[str, str]] = {
    "bucket": "bucket",
    "n_truth": "plates",
    "recall": "recall",
    "eir": "EIR",
    "plate_precision": "plate prec.",
    "char_accuracy": "char acc.",
    "n_predicted": "predicted",
    "n_matched": "found",
    "n_exact": "exact",
}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def format_breakdown(b: Breakdown) -> str:
    """Plain-text tables of a breakdown, one per grouping (ratios to 3 decimals, ``-`` where undefined), after a
    line of overall figures when :attr:`Breakdown.overall` is set."""
    from tabulate import tabulate

    parts = []
    o = b.overall
    if o:

        def fmt(key: str) -> str:
            v = o.get(key, math.nan)
            return "-" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}"

        parts.append(
            f"overall: {o.get('n_images', 0)} images, {o.get('n_truth', 0)} plates, {o.get('n_predicted', 0)} "
            f"predicted: recall {fmt('recall')}  EIR {fmt('eir')}  plate precision {fmt('plate_precision')}  "
            f"char accuracy {fmt('char_accuracy')}"
        )
    for group in b.groups:
        rows = [[_cell(row[k]) for k in _HEADERS] for row in b.table(group)]
        title = GROUP_TITLES.get(group, group)
        n = b.unassigned.get(group, 0)
        if n:
            title += f" ({n} plate{'' if n == 1 else 's'} unknown, in no bucket)"
        align = ("left",) + ("right",) * (len(_HEADERS) - 1)
        table = tabulate(rows, headers=list(_HEADERS.values()), disable_numparse=True, colalign=align)
        parts.append(f"{title}\n{table}")
    return "\n\n".join(parts)


def breakdown_from_coco(
    coco_json_path: Path, image_root: Path | None, readings: Sequence[Mapping[str, Any]], iou_thr: float = MATCH_IOU
) -> Breakdown:
    """The breakdown of ``readings`` against a COCO split written by :mod:`alpr.data.coco`.

    Args:
        coco_json_path: e.g. ``<training version>/annotations/val.json``; its images' ``plates`` are the truth
            (their ``points`` give the angle), ``width`` / ``height`` the image size.
        image_root: the folder the images' ``file_name`` is relative to (the training version's folder), read in
            grey for the brightness; None leaves every plate's brightness unknown.
        readings: one reading per image of the file, in its order (e.g. :meth:`PlateReader.read_files` on the
            images' paths).
        iou_thr: Box IoU needed for a match.

    Raises:
        FileNotFoundError: ``coco_json_path`` is missing.
        ValueError: ``readings`` and the file's images differ in number, an image record lacks its size, or an
            image cannot be read (each names the file).
    """
    coco_json_path = Path(coco_json_path)
    images = json.loads(coco_json_path.read_text(encoding="utf-8"))["images"]
    if len(readings) != len(images):
        raise ValueError(f"{coco_json_path}: {len(images)} images but {len(readings)} readings")
    m = BreakdownMetrics(iou_thr)
    for img, reading in zip(images, readings, strict=True):
        try:
            size = (int(img["width"]), int(img["height"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{coco_json_path}: image {img.get('id')!r} has no valid width/height") from None
        gray = None
        if image_root is not None:
            import cv2

            path = Path(image_root) / img["file_name"]
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise ValueError(f"{path}: not a readable image ({coco_json_path}, image {img.get('id')!r})")
        m.add(img.get("plates", []), reading, size, gray)
    return m.result()
