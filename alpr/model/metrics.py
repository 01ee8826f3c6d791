"""Plate metrics: EIR, plate precision and character accuracy, exactly as ``docs/PLATE_SPEC.md`` "Metrics".

Matching (PLATE_SPEC): predicted and ground-truth plates are matched one-to-one, greedily by descending predicted
score, when their boxes have IoU >= 0.5 (each prediction, in that order, takes the still-unmatched ground-truth
plate with the highest IoU). Over a whole evaluation set:

- **EIR** (exact inference rate, the original project's name): ground-truth plates whose matched prediction has
  exactly the same text / all ground-truth plates.
- **Plate precision**: predicted plates matched with exactly the same text / all predicted plates.
- **Character accuracy**: 1 - (summed Levenshtein distance between matched texts, an unmatched ground-truth plate
  counting its full text length) / (summed ground-truth text length). Unmatched predictions do not enter it; it
  can be negative when predicted texts are much longer than the truth.

Undefined ratios are NaN, never 0 or 1: with no ground-truth plates ``eir`` and ``char_accuracy`` are NaN (and
``char_accuracy`` also when every ground-truth text is empty); with no predicted plates ``plate_precision`` is NaN.

Levenshtein distances come from :mod:`rapidfuzz` (``rapidfuzz.distance.Levenshtein``).

COCO detection mAP (the fourth PLATE_SPEC metric) is computed with pycocotools elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

__all__ = ["box_iou", "match_plates", "PlateMetrics", "plate_metrics", "MATCH_IOU"]

#: IoU a predicted plate needs with a ground-truth plate to match it (PLATE_SPEC "Metrics").
MATCH_IOU: float = 0.5

BoxLike = Sequence[float]


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (any unit, e.g. pixels).

    Boxes with zero or negative width or height have zero area; when the union is zero (two empty boxes) the
    IoU is 0.0, never a division error. Returns a float in [0, 1].
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    if not (iw > 0 and ih > 0):
        return 0.0
    inter = iw * ih
    area_a = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0)
    area_b = max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _score_key(score: float) -> float:
    # Descending by score; NaN scores go last.
    s = float(score)
    return math.inf if math.isnan(s) else -s


def match_plates(
    truth: Sequence[tuple[BoxLike, str]],
    predicted: Sequence[tuple[BoxLike, str, float]],
    iou_thr: float = MATCH_IOU,
) -> list[tuple[int, int]]:
    """Match predicted plates to ground-truth plates one-to-one (PLATE_SPEC.md "Metrics").

    Predictions are visited by descending score (ties, and NaN scores last, in input order); each takes the
    still-unmatched ground-truth plate with the highest IoU, if that IoU is >= ``iou_thr`` (ties: the lower
    ground-truth index). Texts do not take part in matching.

    Args:
        truth: ``(box, text)`` per ground-truth plate, boxes ``(x1, y1, x2, y2)`` in pixels.
        predicted: ``(box, text, score)`` per predicted plate, same box convention.
        iou_thr: Minimum IoU for a match (inclusive).

    Returns:
        ``(truth_index, predicted_index)`` pairs, in the order they were made (descending predicted score).
    """
    order = sorted(range(len(predicted)), key=lambda j: (_score_key(predicted[j][2]), j))
    free = set(range(len(truth)))
    pairs: list[tuple[int, int]] = []
    for j in order:
        best_i, best_iou = -1, -1.0
        for i in sorted(free):
            iou = box_iou(truth[i][0], predicted[j][0])
            if iou >= iou_thr and iou > best_iou:
                best_i, best_iou = i, iou
        if best_i >= 0:
            free.discard(best_i)
            pairs.append((best_i, j))
    return pairs


def _truth_list(truth_plates: Any) -> list[Mapping[str, Any]]:
    if isinstance(truth_plates, Mapping):
        return list(truth_plates["plates"])
    return list(truth_plates)


class PlateMetrics:
    """Accumulates the PLATE_SPEC.md plate metrics image by image.

    Example::

        m = PlateMetrics()
        for truth_plates, reading in images:
            m.add(truth_plates, reading)
        m.result()  # {"eir": ..., "plate_precision": ..., "char_accuracy": ..., "n_truth": ..., ...}

    Args:
        iou_thr: Box IoU needed for a match (PLATE_SPEC: 0.5).
    """

    def __init__(self, iou_thr: float = MATCH_IOU) -> None:
        self.iou_thr = float(iou_thr)
        self.n_images = 0
        self.n_truth = 0
        self.n_predicted = 0
        self.n_matched = 0
        self.n_exact = 0
        self.char_distance = 0
        self.n_truth_chars = 0

    def add(self, truth_plates: Sequence[Mapping[str, Any]] | Mapping[str, Any], reading: Mapping[str, Any]) -> None:
        """Add one image.

        Args:
            truth_plates: The image's ground-truth plates, each a mapping with ``"box"`` (``[x1, y1, x2, y2]``
                pixels) and ``"text"``; a ground-truth reading ``{"plates": [...]}`` is accepted too.
            reading: The model's reading of the image (PLATE_SPEC "A reading"): ``{"plates": [{"box", "text",
                "score", ...}, ...]}``.

        Raises:
            KeyError: a plate lacks ``box``/``text`` (or, predicted, ``score``), or ``reading`` lacks ``plates``.
        """
        truth = [(t["box"], str(t["text"])) for t in _truth_list(truth_plates)]
        pred = [(p["box"], str(p["text"]), float(p["score"])) for p in reading["plates"]]
        pairs = match_plates(truth, pred, self.iou_thr)
        matched_truth = {i for i, _ in pairs}
        self.n_images += 1
        self.n_truth += len(truth)
        self.n_predicted += len(pred)
        self.n_matched += len(pairs)
        for i, j in pairs:
            t, p = truth[i][1], pred[j][1]
            self.n_exact += t == p
            self.char_distance += Levenshtein.distance(t, p)
        for i, (_, text) in enumerate(truth):
            self.n_truth_chars += len(text)
            if i not in matched_truth:
                self.char_distance += len(text)

    def result(self) -> dict[str, Any]:
        """The metrics so far.

        Returns:
            ``eir``, ``plate_precision``, ``char_accuracy`` (floats; NaN where undefined: no ground-truth plates
            for ``eir``, no ground-truth characters for ``char_accuracy``, no predicted plates for
            ``plate_precision``) and the counts ``n_images``, ``n_truth``, ``n_predicted``, ``n_matched``,
            ``n_exact``, ``char_distance`` (summed Levenshtein distance incl. unmatched truth), ``n_truth_chars``.
        """
        nan = float("nan")
        return {
            "eir": self.n_exact / self.n_truth if self.n_truth else nan,
            "plate_precision": self.n_exact / self.n_predicted if self.n_predicted else nan,
            "char_accuracy": 1.0 - self.char_distance / self.n_truth_chars if self.n_truth_chars else nan,
            "n_images": self.n_images,
            "n_truth": self.n_truth,
            "n_predicted": self.n_predicted,
            "n_matched": self.n_matched,
            "n_exact": self.n_exact,
            "char_distance": self.char_distance,
            "n_truth_chars": self.n_truth_chars,
        }


def plate_metrics(
    pairs: Iterable[tuple[Sequence[Mapping[str, Any]] | Mapping[str, Any], Mapping[str, Any]]],
    iou_thr: float = MATCH_IOU,
) -> dict[str, Any]:
    """PLATE_SPEC metrics over ``(truth_plates, reading)`` pairs, one per image (see :class:`PlateMetrics`)."""
    m = PlateMetrics(iou_thr)
    for truth_plates, reading in pairs:
        m.add(truth_plates, reading)
    return m.result()


# --------------------------------------------------------------------- mmdetection evaluator keys
#: Short metric names accepted by :func:`select_best`, mapped to the evaluator's keys.
METRIC_KEYS = {
    "eir": "plate/eir",
    "plate_precision": "plate/plate_precision",
    "char_accuracy": "plate/char_accuracy",
    "mAP": "coco/bbox_mAP",
    "mAP_50": "coco/bbox_mAP_50",
}


#: COCO keys mmdetection's CocoMetric omits when the detector output nothing at all for the split.
COCO_KEYS = ("coco/bbox_mAP", "coco/bbox_mAP_50")


def complete_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Evaluator metrics (``coco/…``, ``plate/…``) with the COCO mAP keys set to 0.0 when CocoMetric returned
    nothing because there were no detections (AP of an empty detection set is 0); other keys dropped."""
    out = {k: float(v) for k, v in raw.items() if k.startswith(("coco/", "plate/"))}
    if any(k.startswith("plate/") for k in out):
        for key in COCO_KEYS:
            out.setdefault(key, 0.0)
    return out


def short_metrics(raw: dict[str, float]) -> dict[str, float]:
    """Rename evaluator keys (``plate/eir``…) to the short names of :data:`METRIC_KEYS`; others dropped."""
    raw = complete_metrics(raw)
    return {short: float(raw[key]) for short, key in METRIC_KEYS.items() if key in raw}
