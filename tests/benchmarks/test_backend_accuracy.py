"""benchmarks/backend_accuracy.py on a real (tiny) exported model, and bench_serve's stage arithmetic (the
benchmarks themselves need a trained model: docs/serving.md)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    module_spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses look their module up there
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accuracy():
    return _load("backend_accuracy")


@pytest.fixture(scope="module")
def bench_serve():
    return _load("bench_serve")


def test_both_back_ends_score_the_tiny_model_alike(accuracy, tiny_onnx_model_dir, tiny_coco, tmp_path, capsys):
    out = tmp_path / "acc.json"
    assert accuracy.main(["--model", str(tiny_onnx_model_dir), "--data", str(tiny_coco), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "largest |onnx - pytorch|" in printed
    import json

    result = json.loads(out.read_text())
    assert set(result["splits"]) == {"val", "test"}
    for rows in result["splits"].values():
        assert set(rows) == {"onnx", "pytorch"}
    for metric, diff in result["max_abs_diff"].items():
        assert diff <= 0.002, (metric, diff)


def test_a_missing_model_exits_1(accuracy, tmp_path, capsys):
    assert accuracy.main(["--model", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 1
    assert "nope" in capsys.readouterr().err


def test_stage_means_are_per_request_between_two_scrapes(bench_serve):
    before = {"decode": (1.0, 10.0), "network": (2.0, 10.0)}
    after = {"decode": (1.5, 20.0), "network": (3.0, 20.0), "zoom": (0.2, 10.0), "encode": (0.0, 0.0)}
    means = bench_serve.stage_means_ms(before, after)
    assert list(means) == ["decode", "network", "zoom"]  # STAGES order; no request: left out
    assert means["decode"] == pytest.approx(50.0) and means["network"] == pytest.approx(100.0)
    assert means["zoom"] == pytest.approx(20.0)
    assert bench_serve.stage_means_ms({}, {}) == {}


def test_ratios_include_the_stages(bench_serve):
    def run(scale: float) -> dict:
        return {
            "latency": {"p50": 10 * scale, "p95": 20 * scale},
            "startup_s": 2.0,
            "throughput": [{"clients": 1, "rps": 10 / scale}],
            "stages_ms": {"network": 5 * scale, "decode": 1.0},
        }

    r = bench_serve.ratios(run(3.0), run(1.0))
    assert r["p50"] == pytest.approx(3.0) and r["rps"]["1"] == pytest.approx(3.0)
    assert r["stages"] == {"network": pytest.approx(3.0), "decode": pytest.approx(1.0)}
    assert "per stage pytorch / onnx: network 3.00x" in bench_serve.format_ratios(r, "pytorch", "onnx")
    assert not math.isnan(r["startup_s"])
