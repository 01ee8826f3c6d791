"""The trials' metric lines round-trip through the Katib collector filter (Python's re and RE2, Katib's engine)."""

import math

import pytest
import re2  # google-re2: the RE2 engine Go's regexp (Katib's metrics collector) implements

from alpr.tuning.collector import (
    METRICS_FILTER,
    Observation,
    format_metrics,
    format_value,
    parse_line,
    parse_lines,
    summarize,
)

NAMES = ["eir", "mAP", "loss"]
VALUES = [0.0, 1.0, 0.736, 0.8312345678, 1e-7, 3.2e-12, -2.5, 12345.678, 1e21, 0.5, 2, 7.000001]

#: What else a trial prints: mmengine's config dump and its training/validation log lines.
NOISE = [
    "    loss_bbox=dict(loss_weight=2.0, type='GIoULoss'),",
    "    loss_cls=dict(beta=2.0, loss_weight=1.0, type='QualityFocalLoss', use_sigmoid=True),",
    "optim_wrapper = dict(optimizer=dict(lr=0.004, type='AdamW', weight_decay=0.05))",
    "11/21 06:28:16 - mmengine - INFO - Epoch(train) [1][3/3]  lr: 4.0e-05  loss: 5.1234  loss_cls: 1.2",
    "11/21 06:28:20 - mmengine - INFO - Epoch(val) [1][4/4]  coco/bbox_mAP: 0.0010  plate/eir: 0.0000",
    "save_best='plate/eir'",
    "eir=0.9 mAP=0.9 loss=0.1",  # the right names, but not behind the marker
    'final metrics: {"eir": 0.5, "mAP": 0.25}',
]


def _katib_parse(line: str, names: list[str]) -> list[tuple[str, str]]:
    """Katib's text-format collector (parseLogsInTextFormat) on one line, with RE2 as Go would run it."""
    if not any(n in line for n in names):
        return []
    found = []
    for match in re2.compile(METRICS_FILTER).finditer(line):
        groups = match.groups()
        if len(groups) < 2:
            continue
        name, value = groups[0].strip(), groups[1].strip()
        if name in names:
            found.append((name, value))
    return found


@pytest.mark.parametrize("value", VALUES)
def test_a_value_round_trips_through_re_and_re2(value):
    lines = format_metrics({"eir": value, "mAP": value, "loss": value})
    assert len(lines) == 3
    for line, name in zip(lines, NAMES):
        obs = parse_line(line, NAMES)
        assert [o.name for o in obs] == [name]
        assert obs[0].value == pytest.approx(value, rel=1e-5, abs=0)
        assert obs[0].timestamp is not None and obs[0].timestamp.endswith("Z")
        assert _katib_parse(line, NAMES) == [(name, format_value(value))]
        assert float(_katib_parse(line, NAMES)[0][1]) == obs[0].value


def test_the_timestamp_is_rfc3339_and_first():
    line = format_metrics({"eir": 0.5}, timestamp="2026-11-21T06:28:16.781553Z")[0]
    assert line == "2026-11-21T06:28:16.781553Z alpr-metric eir=0.5"
    assert parse_line(line, NAMES) == [Observation("eir", 0.5, "2026-11-21T06:28:16.781553Z")]


def test_non_finite_values_are_left_out():
    assert format_metrics({"eir": float("nan"), "mAP": math.inf, "loss": None}) == []
    with pytest.raises(ValueError, match="not finite"):
        format_value(float("nan"))


def test_names_the_filter_cannot_read_are_refused():
    with pytest.raises(ValueError, match="cannot be read"):
        format_metrics({"coco/bbox_mAP": 0.5})


@pytest.mark.parametrize("line", NOISE)
def test_other_output_is_not_taken_for_metrics(line):
    assert parse_line(line, NAMES) == []
    assert _katib_parse(line, NAMES) == []


def test_only_the_asked_metrics_are_read():
    lines = format_metrics({"eir": 0.5, "plate_precision": 0.7})
    assert [o.name for o in parse_lines(lines, NAMES)] == ["eir"]
    assert [name for line in lines for name, _ in _katib_parse(line, NAMES)] == ["eir"]


def test_summarize_applies_katibs_default_strategies():
    obs = [
        Observation("eir", 0.2),
        Observation("loss", 3.0),
        Observation("eir", 0.6),
        Observation("loss", 2.0),
        Observation("eir", 0.4),
        Observation("loss", 1.5),
    ]
    assert summarize(obs, "eir", "maximize") == {"eir": 0.6, "loss": 1.5}
    assert summarize(obs, "loss", "minimize") == {"eir": 0.4, "loss": 1.5}
    assert summarize([], "eir") == {}
    with pytest.raises(ValueError):
        summarize(obs, "eir", "up")
