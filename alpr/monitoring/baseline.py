"""The served model's baseline and the drift measures against it: what "normal" readings look like.

The Test step (:func:`alpr.steps.test.test_step`) reads the held-out split with the model it is about to hand to
Deploy; :func:`baseline_from_plates` summarises those readings as a :class:`Baseline` -- the share of plates with a
valid text and the histogram of plate scores over :data:`SCORE_EDGES` -- which the Test step records in the metadata
store (``model_baselines``, :meth:`alpr.metadata.transaction.MetadataTx.add_model_baseline`). The monitor compares
live readings with it (:mod:`alpr.monitoring.metrics`): the valid-share difference and the population stability index
(:func:`population_stability_index`) of the live score histogram against the baseline's.

Pure Python (no numpy): imported by the monitor and the Test step alike.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "PSI_EPSILON",
    "SCORE_EDGES",
    "Baseline",
    "baseline_from_plates",
    "histogram",
    "population_stability_index",
]

#: Bin edges of plate-score histograms (baseline, live, and the Prometheus histogram ``alpr_monitor_plate_score``):
#: bin i is ``[e_i, e_i+1)``, the last one also holds 1.0. Finer near 1, where a working model's scores are.
SCORE_EDGES: tuple[float, ...] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)
#: The proportion an empty bin counts as in :func:`population_stability_index` (the log of 0 is undefined); a
#: common choice of smoothing in credit-scoring practice.
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class Baseline:
    """How the model read the Test step's images.

    Attributes:
        model_id: the model (metadata-store id).
        split: the split read (``test``).
        images: images read.
        plates: plates read.
        valid_plates: plates whose text is valid (PLATE_SPEC's pattern).
        score_edges: the histogram's bin edges (K + 1 numbers, ascending).
        score_counts: plates per bin (K integers).
        created_at: when it was recorded (UTC; None before it is stored).
    """

    model_id: int
    split: str
    images: int
    plates: int
    valid_plates: int
    score_edges: tuple[float, ...]
    score_counts: tuple[int, ...]
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.score_edges) < 2 or list(self.score_edges) != sorted(set(self.score_edges)):
            raise ValueError(f"score_edges must be at least two ascending numbers, got {self.score_edges!r}")
        if len(self.score_counts) != len(self.score_edges) - 1:
            raise ValueError(
                f"score_counts has {len(self.score_counts)} bins for {len(self.score_edges)} edges: it needs one less"
            )
        if any(c < 0 for c in self.score_counts) or sum(self.score_counts) != self.plates:
            raise ValueError(f"score_counts {self.score_counts!r} must be non-negative and add up to plates")
        if not 0 <= self.valid_plates <= self.plates:
            raise ValueError(f"valid_plates ({self.valid_plates}) must be between 0 and plates ({self.plates})")

    @property
    def valid_share(self) -> float:
        """Valid plates over plates (NaN without plates)."""
        return self.valid_plates / self.plates if self.plates else math.nan

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Baseline:
        """A baseline from a ``model_baselines`` row (a dict of its columns)."""
        return cls(
            model_id=int(row["model_id"]),
            split=row["split"],
            images=int(row["images"]),
            plates=int(row["plates"]),
            valid_plates=int(row["valid_plates"]),
            score_edges=tuple(float(e) for e in row["score_edges"]),
            score_counts=tuple(int(c) for c in row["score_counts"]),
            created_at=row.get("created_at"),
        )


def histogram(scores: Iterable[float], edges: Sequence[float] = SCORE_EDGES) -> tuple[int, ...]:
    """Count ``scores`` per bin ``[e_i, e_i+1)`` of ``edges`` (the last bin closed); values outside the edges go to
    the first or last bin."""
    counts = [0] * (len(edges) - 1)
    for score in scores:
        i = bisect.bisect_right(edges, score) - 1
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return tuple(counts)


def baseline_from_plates(
    model_id: int, split: str, readings: Sequence[Mapping[str, Any]], edges: Sequence[float] = SCORE_EDGES
) -> Baseline:
    """The baseline of ``readings`` (PLATE_SPEC readings ``{"plates": [{"valid", "score", ...}]}``, one per image).

    Raises:
        KeyError: a plate lacks ``valid`` or ``score``.
    """
    plates = [plate for reading in readings for plate in reading.get("plates", [])]
    return Baseline(
        model_id=int(model_id),
        split=split,
        images=len(readings),
        plates=len(plates),
        valid_plates=sum(bool(p["valid"]) for p in plates),
        score_edges=tuple(float(e) for e in edges),
        score_counts=histogram((float(p["score"]) for p in plates), edges),
    )


def population_stability_index(
    expected: Sequence[float], actual: Sequence[float], *, epsilon: float = PSI_EPSILON
) -> float:
    """The population stability index of the ``actual`` histogram against the ``expected`` one (same bins).

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` with ``a_i``, ``e_i`` the shares of bin i (counts over their
    total; a share of 0 counts as ``epsilon``). 0 for identical distributions, larger the more they differ; the
    usual reading is < 0.1 no real change, 0.1--0.25 some change, > 0.25 a significant shift. Source: N. Siddiqi,
    *Credit Risk Scorecards* (Wiley, 2006), ch. 8; B. Yurdakul, *Statistical Properties of Population Stability
    Index* (Western Michigan University, 2018), eq. 1.

    Returns:
        the index, or NaN when either histogram is empty.

    Raises:
        ValueError: the histograms have different numbers of bins.
    """
    if len(expected) != len(actual):
        raise ValueError(f"histograms differ in bins: expected has {len(expected)}, actual {len(actual)}")
    e_total, a_total = float(sum(expected)), float(sum(actual))
    if e_total <= 0 or a_total <= 0:
        return math.nan
    psi = 0.0
    for e, a in zip(expected, actual, strict=True):
        e_share = max(e / e_total, epsilon)
        a_share = max(a / a_total, epsilon)
        psi += (a_share - e_share) * math.log(a_share / e_share)
    return psi
