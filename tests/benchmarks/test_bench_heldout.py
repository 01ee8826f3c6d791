"""The pure parts of benchmarks/bench_heldout.py: its arguments and how the held-out frames are shared out (the
benchmark itself needs a trained model: ``make bench-heldout``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_heldout.py"


@pytest.fixture(scope="module")
def bench():
    module_spec = importlib.util.spec_from_file_location("bench_heldout", SCRIPT)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_road_frames_are_half_1920x1080_half_1280x720(bench):
    assert bench.frame_plan(200, "road") == [(1920, 100, 9014), (1280, 100, 9015)]
    assert bench.frame_plan(5, "road") == [(1920, 3, 9014), (1280, 2, 9015)]
    assert bench.frame_plan(1, "road") == [(1920, 1, 9014)]
    assert bench.frame_plan(0, "road") == []
    assert [bench.frame_name(side) for side, _, _ in bench.frame_plan(2, "road")] == ["1920x1080", "1280x720"]


def test_classic_frames_are_the_earlier_held_out_set(bench):
    assert bench.frame_plan(200, "classic") == [(1280, 200, bench.HELDOUT_SEED)]
    assert bench.HELDOUT_SEED == 9001


def test_seeds_are_the_benchmarks_own(bench):
    seeds = [seed for frames in (bench.ROAD_FRAMES, bench.CLASSIC_FRAMES) for _, seed in frames]
    assert len(set(seeds)) == len(seeds) and 0 not in seeds


def test_frame_plan_refuses_bad_input(bench):
    with pytest.raises(ValueError, match="n must be >= 0"):
        bench.frame_plan(-1, "road")
    with pytest.raises(ValueError, match="unknown conditions 'night'; expected one of road, classic"):
        bench.frame_plan(10, "night")


def test_arguments(bench, capsys):
    args = bench._parse_args([])
    assert (args.model, args.n, args.conditions, args.json, args.distort_glyphs) == ("latest", 200, "road", None, False)
    args = bench._parse_args(["--conditions", "classic", "--n", "7", "--json", "x.json"])
    assert (args.conditions, args.n, args.json) == ("classic", 7, Path("x.json"))
    for bad in (["--conditions", "night"], ["--n", "0"]):
        with pytest.raises(SystemExit):
            bench._parse_args(bad)
    assert "--n must be at least 1" in capsys.readouterr().err
