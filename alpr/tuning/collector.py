"""The metric lines a trial prints, and the filter Katib's StdOut metrics collector reads them with.

A trial prints one line per metric after every validation::

    2026-11-21T06:28:16.781553Z alpr-metric eir=0.736
    2026-11-21T06:28:16.781553Z alpr-metric mAP=0.8312
    2026-11-21T06:28:16.781553Z alpr-metric loss=0.5127

The line starts with an RFC 3339 timestamp, which Katib's collector takes as the observation's time. The filter
(:data:`METRICS_FILTER`) is Katib's default ``([\\w|-]+)\\s*=\\s*(...)`` behind the ``alpr-metric`` marker, so that
no other ``name=value`` text in the trial's log (mmengine prints its whole config, ``loss_bbox=dict(...)``) can be
taken for a metric. Katib parses it with Go's RE2, this module with Python's ``re``: the pattern uses only syntax
both share, and :func:`parse_lines` applies the collector's rules (a line is only considered when it contains a
metric name; group 1 is the name, group 2 the value; names not asked for are ignored).

Metric strategies (Katib's defaults, reproduced by :func:`summarize`): the objective's value is its best
observation (``max`` when maximizing, ``min`` when minimizing; for EIR this is the checkpoint Evaluate would
select), the additional metrics take their latest observation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: The marker in front of every metric of a trial's output.
MARKER = "alpr-metric"
#: Katib ``metricsCollectorSpec.source.filter.metricsFormat`` entry: group 1 name, group 2 value (RE2 and re).
METRICS_FILTER = MARKER + r"\s+([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
#: The selection metric (objective) and the additional metrics every trial reports.
OBJECTIVE = "eir"
ADDITIONAL_METRICS = ("mAP", "loss")

_FILTER = re.compile(METRICS_FILTER)
_NAME = re.compile(r"[\w|-]+")


@dataclass(frozen=True)
class Observation:
    """One metric value read from a trial's output.

    Attributes:
        name: metric name.
        value: the value.
        timestamp: the line's RFC 3339 timestamp, or None when the line has none.
    """

    name: str
    value: float
    timestamp: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def format_value(value: float) -> str:
    """``value`` as the filter's value group reads it back (6 significant digits; ``1e-07`` style exponents).

    Raises:
        ValueError: NaN or an infinity (the filter cannot express them; the caller leaves such a metric out).
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric value {value!r} is not finite")
    return f"{value:.6g}"


def format_metrics(metrics: Mapping[str, float | None], timestamp: str | None = None) -> list[str]:
    """The output lines for ``metrics`` (one per metric, in order); None, NaN and infinities are left out.

    Raises:
        ValueError: a metric name the filter would not read back (only letters, digits, ``_``, ``-``, ``|``).
    """
    when = timestamp or _now()
    lines = []
    for name, value in metrics.items():
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"metric name {name!r} cannot be read by the collector filter")
        if value is None or not math.isfinite(float(value)):
            continue
        lines.append(f"{when} {MARKER} {name}={format_value(value)}")
    return lines


def _timestamp(line: str) -> str | None:
    first = line.split(" ", 1)[0]
    try:
        datetime.fromisoformat(first.replace("Z", "+00:00"))
    except ValueError:
        return None
    return first if "T" in first else None


def parse_line(line: str, names: Sequence[str]) -> list[Observation]:
    """The observations of metrics ``names`` in one output line (Katib's text-format collector rules)."""
    if not any(n in line for n in names):
        return []
    out = []
    for match in _FILTER.finditer(line):
        name, raw = match.group(1).strip(), match.group(2).strip()
        if name not in names:
            continue
        try:
            value = float(raw)
        except ValueError:  # e.g. an empty value group: Katib would store an unparsable value; skip it
            continue
        out.append(Observation(name, value, _timestamp(line)))
    return out


def parse_lines(lines: Iterable[str], names: Sequence[str]) -> list[Observation]:
    """All observations of metrics ``names`` in ``lines``, in order."""
    return [obs for line in lines for obs in parse_line(line, names)]


def summarize(
    observations: Sequence[Observation],
    objective: str = OBJECTIVE,
    direction: str = "maximize",
) -> dict[str, float]:
    """Each metric's value under Katib's default strategies: the objective's best, the others' latest.

    Raises:
        ValueError: ``direction`` is not ``maximize`` or ``minimize``.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
    best = max if direction == "maximize" else min
    out: dict[str, float] = {}
    for obs in observations:
        if obs.name == objective and obs.name in out:
            out[obs.name] = best(out[obs.name], obs.value)
        else:
            out[obs.name] = obs.value
    return out
