"""alpr.model.stages: seconds per stage, summed; unknown stages named; no clock, no timing; the run groups."""

import time

import pytest

from alpr.model import stages
from alpr.model.stages import StageClock, timed


def test_a_clock_sums_each_stage_and_keeps_the_time_of_a_failing_block():
    clock = StageClock()
    for _ in range(2):
        with clock.stage(stages.NETWORK):
            time.sleep(0.01)
    with pytest.raises(RuntimeError), clock.stage(stages.READING):
        raise RuntimeError("reading failed")
    assert set(clock.seconds) == {stages.NETWORK, stages.READING}
    assert clock.seconds[stages.NETWORK] >= 0.02
    assert 0 <= clock.seconds[stages.READING] < clock.seconds[stages.NETWORK]


def test_an_unknown_stage_is_named_with_the_valid_ones():
    with (
        pytest.raises(ValueError, match="unknown stage 'nms'; stages are decode, preprocess, network"),
        StageClock().stage("nms"),
    ):
        pass


def test_timed_without_a_clock_times_nothing():
    with timed(None, "not even checked"):
        pass
    clock = StageClock()
    with timed(clock, stages.ZOOM):
        pass
    assert list(clock.seconds) == [stages.ZOOM]


def test_run_groups_one_batch_or_one_call_per_image():
    assert stages.run_groups(0, batched=True) == [] == stages.run_groups(0, batched=False)
    assert stages.run_groups(1, batched=True) == [[0]]
    assert stages.run_groups(3, batched=True) == [[0, 1, 2]]
    assert stages.run_groups(3, batched=False) == [[0], [1], [2]]


def test_stage_totals_read_the_histogram_from_a_real_exposition():
    """The server's histogram, written by prometheus_client itself, read back per model and summed."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    hist = Histogram(stages.STAGE_METRIC, "seconds per stage", ["model_name", "stage"], registry=registry)
    hist.labels("alpr", stages.NETWORK).observe(0.25)
    hist.labels("alpr", stages.NETWORK).observe(0.5)
    hist.labels("alpr", stages.DECODE).observe(0.125)
    hist.labels("other", stages.NETWORK).observe(1.0)
    Histogram("unrelated_seconds", "not a stage", ["stage"], registry=registry).labels("network").observe(9.0)
    text = generate_latest(registry).decode()
    assert stages.stage_totals(text, "alpr") == {stages.NETWORK: (0.75, 2.0), stages.DECODE: (0.125, 1.0)}
    assert stages.stage_totals(text) == {stages.NETWORK: (1.75, 3.0), stages.DECODE: (0.125, 1.0)}
    assert stages.stage_totals(text, "missing") == {}
    assert stages.stage_totals("") == {}
