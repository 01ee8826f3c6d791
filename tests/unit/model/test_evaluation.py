"""Evaluation through mmengine's test loop (CocoMetric + PlateReadingMetric) and checkpoint selection."""

import math

import numpy as np
import pytest

from alpr.model.evaluation import evaluate_checkpoint, select_best
from alpr.model.metrics import METRIC_KEYS, short_metrics


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
    assert short_metrics(
        {"coco/bbox_mAP": 0.1, "coco/bbox_mAP_50": 0.4, "plate/eir": 0.2, "coco/bbox_mAP_s": 0.3, "time": 1.0}
    ) == {"mAP": 0.1, "mAP_50": 0.4, "eir": 0.2}


def test_no_detections_means_zero_map():
    # CocoMetric returns nothing when the detector output no box at all; AP of that is 0.
    assert short_metrics({"plate/eir": 0.0}) == {"mAP": 0.0, "mAP_50": 0.0, "eir": 0.0}
    assert short_metrics({}) == {}


def test_sweep_reading_thresholds_picks_the_best_on_val():
    """Characters scored 0.25 are missed at the default 0.3; a spurious one at 0.17 enters at 0.15: the sweep
    picks 0.2 or 0.25 (tie → closer to the default: 0.25) and reads the plate exactly there."""
    import numpy as np

    from alpr import spec
    from alpr.model.evaluation import THRESHOLD_GRID, sweep_reading_thresholds

    text = "12A3456"
    boxes = [[100 + 20 * i, 100, 116 + 20 * i, 130] for i in range(7)] + [[95, 95, 245, 135], [180, 50, 190, 60]]
    labels = [spec.class_id(c) for c in text] + [spec.class_id(spec.PLATE_ONE_LINE), spec.class_id("7")]
    scores = [0.25] * 7 + [0.9, 0.17]
    # The spurious "7" lies inside the plate but away from the others.
    boxes[-1] = [236, 100, 244, 130]
    dets = [(np.asarray(boxes, float), np.asarray(labels), np.asarray(scores, float))]
    truth = [[{"box": [95, 95, 245, 135], "text": text}]]
    best, table = sweep_reading_thresholds(dets, truth)
    assert best == {"plate_score_thr": 0.3, "char_score_thr": 0.25}
    assert len(table) == len(THRESHOLD_GRID["plate_score_thr"]) * len(THRESHOLD_GRID["char_score_thr"])
    row = {(r["plate_score_thr"], r["char_score_thr"]): r for r in table}
    assert row[(0.3, 0.25)]["eir"] == 1.0
    assert row[(0.3, 0.3)]["eir"] == 0.0  # default thresholds miss every character
    assert row[(0.3, 0.15)]["eir"] == 0.0  # the spurious character makes 8
    assert row[(0.5, 0.25)]["eir"] == 1.0


def test_sweep_reading_thresholds_rejects_mismatched_inputs():
    from alpr.model.evaluation import sweep_reading_thresholds

    with pytest.raises(ValueError, match="2 detections for 1 images"):
        sweep_reading_thresholds([None, None], [[]])
    with pytest.raises(ValueError, match="no images"):
        sweep_reading_thresholds([], [])


def test_tune_reading_chooses_and_stores_the_reading_settings(tiny_model_dir, tiny_coco, tmp_path):
    import json
    import shutil

    from alpr.model.evaluation import THRESHOLD_GRID, ZOOM_CHOICES, tune_reading

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)  # the fixture is shared: tune_reading rewrites model.json
    before = json.loads((model_dir / "model.json").read_text())
    settings, tuned = tune_reading(model_dir, tiny_coco, "val")
    assert set(settings) == {"plate_score_thr", "char_score_thr", "zoom_below_px"}
    assert settings["plate_score_thr"] in THRESHOLD_GRID["plate_score_thr"]
    assert settings["char_score_thr"] in THRESHOLD_GRID["char_score_thr"]
    assert settings["zoom_below_px"] in ZOOM_CHOICES
    assert set(tuned) == {"eir", "plate_precision", "char_accuracy"}
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["thresholds"] == {k: settings[k] for k in ("plate_score_thr", "char_score_thr")}
    assert meta["zoom_below_px"] == settings["zoom_below_px"]
    sweep = meta["threshold_sweep"]
    assert sweep["split"] == "val" and set(sweep["by_zoom_below_px"]) == {str(z) for z in ZOOM_CHOICES}
    table = sweep["by_zoom_below_px"][str(settings["zoom_below_px"])]
    assert len(table) == len(THRESHOLD_GRID["plate_score_thr"]) * len(THRESHOLD_GRID["char_score_thr"])
    chosen = next(
        r
        for r in table
        if (r["plate_score_thr"], r["char_score_thr"]) == (settings["plate_score_thr"], settings["char_score_thr"])
    )
    assert {k: chosen[k] for k in tuned} == pytest.approx(tuned, nan_ok=True)
    assert {
        k: v for k, v in meta.items() if k not in ("thresholds", "zoom_below_px", "threshold_sweep", "val_metrics")
    } == {k: v for k, v in before.items() if k not in ("thresholds", "val_metrics")}  # the rest kept


def test_tune_reading_of_an_empty_split_changes_nothing(tmp_path):
    import json

    from alpr.model.evaluation import tune_reading

    (tmp_path / "data" / "annotations").mkdir(parents=True)
    (tmp_path / "data" / "annotations" / "val.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert tune_reading(tmp_path / "no-model", tmp_path / "data", "val") == ({}, {})


def test_served_metrics_and_tuning_on_its_detections_agree_with_reading_again(
    tiny_two_stage_model_dir, tiny_coco, tmp_path
):
    import json
    import shutil

    from alpr.model.evaluation import served_metrics, tune_reading
    from alpr.model.inference import PlateReader

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_two_stage_model_dir, model_dir)
    metrics, detections = served_metrics(model_dir, tiny_coco, "val")
    assert {"mAP", "mAP_50", "eir", "plate_precision", "char_accuracy"} <= set(metrics)
    images = json.loads((tiny_coco / "annotations" / "val.json").read_text())["images"]
    assert len(detections) == len(images)
    # The detections are what the model serves: reading them equals reading the files.
    again = PlateReader(model_dir).detect_files([tiny_coco / img["file_name"] for img in images])
    for (b1, l1, s1), (b2, l2, s2) in zip(detections, again, strict=True):
        assert np.allclose(b1, b2) and (l1 == l2).all() and np.allclose(s1, s2)
    fresh = tmp_path / "fresh"  # tune_reading rewrites the thresholds, which choose the plates a reader reads
    shutil.copytree(tiny_two_stage_model_dir, fresh)
    reused = tune_reading(model_dir, tiny_coco, "val", detections={0: detections})
    settings, tuned = tune_reading(fresh, tiny_coco, "val")  # a two-stage model tunes only zoom 0
    assert reused[0] == settings and reused[1] == pytest.approx(tuned, nan_ok=True)
    with pytest.raises(ValueError, match="not one per image of val"):
        tune_reading(model_dir, tiny_coco, "val", detections={0: detections[:-1]})
