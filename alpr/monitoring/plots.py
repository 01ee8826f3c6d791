"""Trend plots of the review page: valid-plate share, mean plate score and traffic per hour, as one SVG.

Three panels share the time axis (UTC hours from ``since`` to ``until``):

1. valid-plate share per hour (plates whose text matches PLATE_SPEC's pattern, over plates read), with the served
   model's Test-step baseline (:attr:`alpr.monitoring.baseline.Baseline.valid_share`) as a dashed line;
2. mean plate score per hour, with the baseline's mean score (:func:`baseline_mean_score`, from its score
   histogram) as a dashed line;
3. readings (images) per hour, as bars.

The lines carry SVG ids (``live-valid-share``, ``baseline-valid-share``, ``live-mean-score``,
``baseline-mean-score``) so that tests and page scripts can find them.

Hours without readings have no point (the line breaks there). Rendered with matplotlib's object API (no pyplot, no
global figure state) under a lock, so concurrent requests of the monitor's thread pool cannot interleave; text is
drawn as paths (matplotlib's default ``svg.fonttype``), so no text of the data ends up as SVG markup.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from alpr.monitoring.baseline import Baseline
from alpr.monitoring.store import TrendPoint

__all__ = ["FIGURE_SIZE_IN", "baseline_mean_score", "trend_svg"]

#: Figure size in inches (width, height) at matplotlib's 72 points per inch of SVG output.
FIGURE_SIZE_IN: tuple[float, float] = (9.0, 7.5)
_LOCK = threading.Lock()


def baseline_mean_score(baseline: Baseline) -> float:
    """The baseline's mean plate score estimated from its histogram: each bin's count at the bin's centre
    (NaN without plates). The bins (:data:`alpr.monitoring.baseline.SCORE_EDGES`) are at most 0.3 wide, 0.05 or
    less above 0.85 where a working model's scores are, so the estimate is within a few hundredths of the mean."""
    total = sum(baseline.score_counts)
    if not total:
        return math.nan
    edges = baseline.score_edges
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return sum(c * n for c, n in zip(centres, baseline.score_counts, strict=True)) / total


def trend_svg(
    points: Sequence[TrendPoint],
    baseline: Baseline | None,
    *,
    since: datetime,
    until: datetime,
    model_version: str | None = None,
) -> bytes:
    """Draw the hourly trend (see the module docstring) and return it as an SVG document (UTF-8 bytes).

    Args:
        points: one per hour with readings (:meth:`alpr.monitoring.store.PredictionLog.hourly_trend`), oldest
            first; NaN shares and scores (an hour without plates) are left out of their panels.
        baseline: the served model's Test-step baseline; None: no baseline line (the legend says so).
        since, until: the time window shown (timezone-aware, UTC).
        model_version: the served model, named in the title (None or ``""``: not named).

    Raises:
        ValueError: ``until`` is not after ``since``.
    """
    if not until > since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    hours = [p.hour for p in points]
    valid = [(p.hour, p.valid_share) for p in points if not math.isnan(p.valid_share)]
    score = [(p.hour, p.mean_score) for p in points if not math.isnan(p.mean_score)]
    with _LOCK:
        fig = Figure(figsize=FIGURE_SIZE_IN)
        ax_valid, ax_score, ax_traffic = fig.subplots(3, 1, sharex=True)
        title = "Readings per hour (UTC)"
        if model_version:
            title += f", model {model_version}"
        fig.suptitle(title)
        for ax, series, label, name, reference in (
            (ax_valid, valid, "valid-plate share", "valid-share", None if baseline is None else baseline.valid_share),
            (
                ax_score,
                score,
                "mean plate score",
                "mean-score",
                None if baseline is None else baseline_mean_score(baseline),
            ),
        ):
            if series:
                ax.plot(
                    [t for t, _ in series],
                    [v for _, v in series],
                    marker="o",
                    markersize=3,
                    label="live",
                    gid=f"live-{name}",
                )
            if reference is not None and not math.isnan(reference):
                ax.axhline(
                    reference,
                    color="tab:orange",
                    linestyle="--",
                    label=f"baseline {reference:.3f}",
                    gid=f"baseline-{name}",
                )
            elif baseline is None:
                ax.plot([], [], color="tab:orange", linestyle="--", label="no baseline recorded")
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="lower left", fontsize="small")
        ax_traffic.bar(hours, [p.readings for p in points], width=timedelta(hours=0.8), align="edge")
        ax_traffic.set_ylabel("readings (images)")
        ax_traffic.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_traffic.grid(True, alpha=0.3)
        ax_traffic.set_xlim(since, until)
        if not points:
            ax_traffic.text(0.5, 0.5, "no readings in this window", transform=ax_traffic.transAxes, ha="center")
        locator = AutoDateLocator(tz=since.tzinfo)
        ax_traffic.xaxis.set_major_locator(locator)
        ax_traffic.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=since.tzinfo))
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()
