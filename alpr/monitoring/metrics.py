"""The monitor's Prometheus metrics (``alpr_monitor_*``), in their own registry, with drift against the baseline.

Every reading the monitor stores is counted here (:meth:`MonitorMetrics.observe`): images, plates, valid plates,
plates per image, plate scores, latency. A sliding window (the last ``window_s`` seconds of plates) gives the live
valid-plate share and the live score histogram; against the served model's Test-step baseline
(:class:`~alpr.monitoring.baseline.Baseline`, :meth:`MonitorMetrics.set_baseline`) they give two drift gauges:

- ``alpr_monitor_valid_share_drift`` = live valid share - baseline valid share (negative: fewer valid plates than
  the model read on its test split);
- ``alpr_monitor_score_drift`` = the population stability index of the live score histogram against the baseline's
  (:func:`~alpr.monitoring.baseline.population_stability_index`, Siddiqi 2006: < 0.1 stable, > 0.25 shifted).

Both are NaN without a baseline or with fewer than ``min_plates`` plates in the window (too few to compare).

The families (:data:`METRIC_NAMES`; the dashboard and alerts in the chart use these names):

=========================================  =========  ==========================================================
``alpr_monitor_readings_total``            counter    images read (one per image of each logged inference)
``alpr_monitor_plates_total``              counter    plates read
``alpr_monitor_valid_plates_total``        counter    plates whose text is valid (PLATE_SPEC's pattern)
``alpr_monitor_plates_per_image``          histogram  plates per image
``alpr_monitor_plate_score``               histogram  plate scores (buckets: the baseline's score edges)
``alpr_monitor_latency_seconds``           histogram  response time - request time of each logged inference
``alpr_monitor_valid_share``               gauge      valid plates / plates in the window
``alpr_monitor_baseline_valid_share``      gauge      the same on the served model's test split
``alpr_monitor_valid_share_drift``         gauge      live - baseline valid share
``alpr_monitor_score_drift``               gauge      PSI of live vs baseline plate scores
``alpr_monitor_window_plates``             gauge      plates in the window (what the gauges above are made of)
``alpr_monitor_events_total{type}``        counter    events accepted, ``type`` = ``request`` | ``response``
``alpr_monitor_events_rejected_total``     counter    events refused, by ``reason`` (see ``EventError``)
``alpr_monitor_pending_requests``          gauge      requests waiting for their response
=========================================  =========  ==========================================================

The plates-per-image histogram is ``alpr_monitor_plates_per_image``, not ``alpr_monitor_plates``: Prometheus
names the counter ``alpr_monitor_plates_total`` family ``alpr_monitor_plates``, and two families cannot share a
name.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alpr.monitoring.baseline import SCORE_EDGES, Baseline, histogram, population_stability_index
from alpr.monitoring.store import PredictionRecord

__all__ = ["METRIC_NAMES", "PREFIX", "REJECT_REASONS", "MonitorMetrics"]

#: Prefix of every metric the monitor exports.
PREFIX = "alpr_monitor_"
#: The metric families (as queried: counters with ``_total``, histograms by their base name).
METRIC_NAMES: tuple[str, ...] = (
    "alpr_monitor_readings_total",
    "alpr_monitor_plates_total",
    "alpr_monitor_valid_plates_total",
    "alpr_monitor_plates_per_image",
    "alpr_monitor_plate_score",
    "alpr_monitor_latency_seconds",
    "alpr_monitor_valid_share",
    "alpr_monitor_baseline_valid_share",
    "alpr_monitor_valid_share_drift",
    "alpr_monitor_score_drift",
    "alpr_monitor_window_plates",
    "alpr_monitor_events_total",
    "alpr_monitor_events_rejected_total",
    "alpr_monitor_pending_requests",
)
#: The ``reason`` labels of ``alpr_monitor_events_rejected_total`` (the ``EventError`` reasons, and ``store_error``
#: when the database refused the rows), all exported from the start at 0.
REJECT_REASONS: tuple[str, ...] = (
    "malformed",
    "not_binary",
    "unknown_type",
    "unknown_id",
    "duplicate_id",
    "too_large",
    "bad_request_body",
    "bad_image",
    "bad_response_body",
    "bad_reading",
    "store_error",
)
#: Buckets of plates per image.
PLATES_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12)
#: Buckets of the logged latency, seconds (a CPU model reads an image in 0.05--2 s).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Most plates kept in the sliding window (memory bound at high traffic: the window then covers less time).
MAX_WINDOW_PLATES = 100_000


class MonitorMetrics:
    """The monitor's metrics in their own :class:`prometheus_client.CollectorRegistry` (:attr:`registry`).

    Args:
        window_s: the sliding window of the live valid share and score histogram, seconds.
        min_plates: fewest plates in the window for the drift gauges (below: NaN).
        clock: ``time.monotonic`` (tests pass their own).

    Thread-safe: the event handler observes while a scrape refreshes.
    """

    def __init__(
        self, *, window_s: float = 3600.0, min_plates: int = 50, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window_s <= 0 or min_plates < 1:
            raise ValueError("window_s must be > 0 and min_plates >= 1")
        self.window_s = window_s
        self.min_plates = min_plates
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[tuple[float, bool, float]] = deque(maxlen=MAX_WINDOW_PLATES)  # (time, valid, score)
        self._baseline: Baseline | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.readings = Counter("alpr_monitor_readings", "Images read by the served model", registry=r)
        self.plates = Counter("alpr_monitor_plates", "Plates read", registry=r)
        self.valid_plates = Counter("alpr_monitor_valid_plates", "Plates with a valid text", registry=r)
        self.plates_per_image = Histogram(
            "alpr_monitor_plates_per_image", "Plates per image", buckets=PLATES_BUCKETS, registry=r
        )
        self.plate_score = Histogram(
            "alpr_monitor_plate_score", "Plate scores", buckets=tuple(e for e in SCORE_EDGES if e > 0), registry=r
        )
        self.latency = Histogram(
            "alpr_monitor_latency_seconds",
            "Response time minus request time of the logged inferences",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.valid_share = Gauge("alpr_monitor_valid_share", "Valid plates / plates in the window", registry=r)
        self.baseline_valid_share = Gauge(
            "alpr_monitor_baseline_valid_share", "Valid plates / plates on the served model's test split", registry=r
        )
        self.valid_share_drift = Gauge(
            "alpr_monitor_valid_share_drift", "Live minus baseline valid-plate share", registry=r
        )
        self.score_drift = Gauge(
            "alpr_monitor_score_drift", "Population stability index of live vs baseline plate scores", registry=r
        )
        self.window_plates = Gauge("alpr_monitor_window_plates", "Plates in the sliding window", registry=r)
        self.events = Counter("alpr_monitor_events", "Events accepted", ["type"], registry=r)
        self.rejected = Counter("alpr_monitor_events_rejected", "Events refused, by reason", ["reason"], registry=r)
        self.pending = Gauge("alpr_monitor_pending_requests", "Requests waiting for their response", registry=r)
        for kind in ("request", "response"):
            self.events.labels(type=kind)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self.refresh()

    @property
    def baseline(self) -> Baseline | None:
        """The baseline the drift is measured against (None: none known)."""
        return self._baseline

    def set_baseline(self, baseline: Baseline | None) -> None:
        """Measure drift against ``baseline`` from now on (None: the baseline gauges become NaN)."""
        with self._lock:
            self._baseline = baseline
        self.refresh()

    def reject(self, reason: str) -> None:
        """Count an event refused for ``reason``."""
        self.rejected.labels(reason=reason).inc()

    def observe(self, records: Iterable[PredictionRecord]) -> None:
        """Count stored ``records`` (one per image) and add their plates to the window."""
        now = self._clock()
        with self._lock:
            for record in records:
                self.readings.inc()
                self.plates_per_image.observe(len(record.plates))
                if record.latency_ms is not None and record.latency_ms >= 0:
                    self.latency.observe(record.latency_ms / 1000.0)
                for plate in record.plates:
                    self.plates.inc()
                    if plate.valid:
                        self.valid_plates.inc()
                    self.plate_score.observe(plate.score)
                    self._window.append((now, plate.valid, plate.score))
        self.refresh()

    def refresh(self) -> None:
        """Drop plates older than the window and set the window and drift gauges (called by every scrape)."""
        with self._lock:
            cutoff = self._clock() - self.window_s
            while self._window and self._window[0][0] < cutoff:
                self._window.popleft()
            n = len(self._window)
            valid = sum(1 for _, ok, _ in self._window if ok)
            live_share = valid / n if n else math.nan
            live_counts: Sequence[int] = ()
            baseline = self._baseline
            if baseline is not None:
                live_counts = histogram((s for _, _, s in self._window), baseline.score_edges)
        self.window_plates.set(n)
        self.valid_share.set(live_share)
        base_share = baseline.valid_share if baseline is not None else math.nan
        self.baseline_valid_share.set(base_share)
        enough = baseline is not None and n >= self.min_plates and baseline.plates > 0
        self.valid_share_drift.set(live_share - base_share if enough else math.nan)
        psi = population_stability_index(baseline.score_counts, live_counts) if enough else math.nan  # type: ignore[union-attr]
        self.score_drift.set(psi)

    def exported_names(self) -> set[str]:
        """The sample names this registry exports (``alpr_monitor_plate_score_bucket``, ...), for tests that check
        a dashboard's queries."""
        return {sample.name for family in self.registry.collect() for sample in family.samples}
