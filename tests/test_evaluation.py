"""Evaluation through mmengine's test loop (CocoMetric + PlateReadingMetric) and checkpoint selection."""

import math

import pytest

from alpr.evaluation import METRIC_KEYS, evaluate_checkpoint, select_best, short_metrics


def test_evaluate_checkpoint_reports_coco_and_plate_metrics(tiny_training, tiny_coco):
    ckpt = [p for p in tiny_training.checkpoints if p.name == "epoch_2.pth"][0]
    metrics = evaluate_checkpoint(tiny_training.config_path, ckpt, tiny_coco, "test")
    assert set(metrics) == set(METRIC_KEYS)
    for name in ("mAP", "mAP_50", "eir", "plate_precision"):
        assert math.isnan(metrics[name]) or 0.0 <= metrics[name] <= 1.0


def test_evaluate_checkpoint_names_missing_files(tiny_training, tiny_coco, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        evaluate_checkpoint(tiny_training.config_path, tmp_path / "missing.pth", tiny_coco)
    ckpt = tiny_training.checkpoints[-1]
    with pytest.raises(FileNotFoundError, match="holdout.json"):
        evaluate_checkpoint(tiny_training.config_path, ckpt, tiny_coco, "holdout")


def test_select_best_by_metric_with_ties_and_nan():
    results = {
        "epoch_1.pth": {"eir": 0.5, "mAP": 0.7},
        "epoch_2.pth": {"eir": 0.8, "mAP": 0.6},
        "epoch_3.pth": {"eir": 0.8, "mAP": float("nan")},
    }
    assert select_best(results, "eir") == "epoch_3.pth"  # tie -> the later checkpoint
    assert select_best(results, "mAP") == "epoch_1.pth"  # NaN never wins
    with pytest.raises(ValueError, match="unknown selection metric 'f1'"):
        select_best(results, "f1")
    with pytest.raises(ValueError, match="no checkpoints"):
        select_best({}, "eir")


def test_short_metrics_renames_and_drops():
    assert short_metrics({"coco/bbox_mAP": 0.1, "coco/bbox_mAP_50": 0.4, "plate/eir": 0.2, "coco/bbox_mAP_s": 0.3,
                          "time": 1.0}) == {"mAP": 0.1, "mAP_50": 0.4, "eir": 0.2}


def test_no_detections_means_zero_map():
    # CocoMetric returns nothing when the detector output no box at all; AP of that is 0.
    assert short_metrics({"plate/eir": 0.0}) == {"mAP": 0.0, "mAP_50": 0.0, "eir": 0.0}
    assert short_metrics({}) == {}
