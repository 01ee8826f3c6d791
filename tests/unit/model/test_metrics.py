"""Tests of alpr.model.metrics: EIR, plate precision, character accuracy (docs/PLATE_SPEC.md "Metrics")."""

from __future__ import annotations

import math

import pytest

from alpr import spec
from alpr.model.metrics import PlateMetrics, box_iou, match_plates, plate_metrics
from alpr.model.reading import Detection, read_plates


def _pred(box, text, score):
    return {
        "text": text,
        "layout": "one_line",
        "valid": spec.is_valid_text(text),
        "box": list(box),
        "score": score,
        "characters": [],
    }


def _truth(box, text):
    return {"box": list(box), "text": text}


# -------------------------------------------------------------------------------------------------- box_iou


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 5)) == 0.5
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_box_iou_zero_area_safe():
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0
    assert box_iou((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0
    assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0  # inverted box has no area


# --------------------------------------------------------------------------------------------- match_plates


def test_match_at_exactly_half_iou():
    truth = [((0, 0, 10, 10), "12A3456")]
    assert match_plates(truth, [((0, 0, 10, 5), "12A3456", 0.9)]) == [(0, 0)]  # IoU exactly 0.5
    assert match_plates(truth, [((0, 0, 10, 4.99), "12A3456", 0.9)]) == []


def test_match_greedy_by_descending_score():
    truth = [((0, 0, 10, 10), "12A3456")]
    # Prediction 0 overlaps better but scores lower: prediction 1 (higher score) takes the truth plate.
    predicted = [((0, 0, 10, 10), "12A3456", 0.6), ((0, 0, 10, 6), "12A3457", 0.9)]
    assert match_plates(truth, predicted) == [(0, 1)]


def test_match_takes_highest_iou_truth_and_is_one_to_one():
    truth = [((0, 0, 10, 10), "A"), ((2, 0, 12, 10), "B")]
    predicted = [((2, 0, 12, 10), "x", 0.9), ((1, 0, 11, 10), "y", 0.8), ((1, 0, 11, 10), "z", 0.7)]
    # 0 takes truth 1 (IoU 1.0 over 0.67); 1 gets truth 0 (IoU 0.82); 2 finds nothing left.
    assert match_plates(truth, predicted) == [(1, 0), (0, 1)]
    assert match_plates([], predicted) == []
    assert match_plates(truth, []) == []


def test_match_nan_score_goes_last():
    truth = [((0, 0, 10, 10), "A")]
    predicted = [((0, 0, 10, 10), "x", float("nan")), ((0, 0, 10, 8), "y", 0.1)]
    assert match_plates(truth, predicted) == [(0, 1)]


# ----------------------------------------------------------------------------------------------- the three


def test_hand_computed_metrics():
    # Image 1: plate A read exactly; plate B read with one character missing (Levenshtein 1); a false positive.
    a, b, fp = (0, 0, 100, 30), (200, 0, 300, 30), (400, 400, 500, 430)
    truth1 = [_truth(a, "12A3456"), _truth(b, "34B5678")]
    reading1 = {
        "plates": [_pred(a, "12A3456", 0.9), _pred((200, 0, 300, 29), "34B567", 0.8), _pred(fp, "99E9999", 0.7)]
    }
    # Image 2: one plate, not found at all: counts its full length (7) against character accuracy.
    truth2 = [_truth((10, 10, 110, 40), "56C7890")]
    reading2 = {"plates": []}

    m = PlateMetrics()
    m.add(truth1, reading1)
    m.add(truth2, reading2)
    r = m.result()
    assert r["n_truth"] == 3 and r["n_predicted"] == 3 and r["n_exact"] == 1 and r["n_matched"] == 2
    assert r["eir"] == pytest.approx(1 / 3)
    assert r["plate_precision"] == pytest.approx(1 / 3)
    assert r["char_distance"] == 0 + 1 + 7
    assert r["n_truth_chars"] == 21
    assert r["char_accuracy"] == pytest.approx(1 - 8 / 21)
    assert r["n_images"] == 2


def test_partial_read_levenshtein_one():
    box = (0, 0, 100, 30)
    for predicted in ("12A3457", "12A345", "12A34556"):  # substitution, deletion, insertion
        r = plate_metrics([([_truth(box, "12A3456")], {"plates": [_pred(box, predicted, 0.9)]})])
        assert r["char_accuracy"] == pytest.approx(1 - 1 / 7)
        assert r["eir"] == 0.0 and r["plate_precision"] == 0.0


def test_false_positive_lowers_precision_only():
    box = (0, 0, 100, 30)
    one = plate_metrics([([_truth(box, "12A3456")], {"plates": [_pred(box, "12A3456", 0.9)]})])
    assert (one["eir"], one["plate_precision"], one["char_accuracy"]) == (1.0, 1.0, 1.0)
    extra = _pred((300, 300, 400, 330), "12A3456", 0.95)
    two = plate_metrics([([_truth(box, "12A3456")], {"plates": [extra, _pred(box, "12A3456", 0.9)]})])
    assert (two["eir"], two["plate_precision"], two["char_accuracy"]) == (1.0, 0.5, 1.0)


def test_right_text_in_wrong_place_is_not_exact():
    # Matching is by box, not by text: a correct text at IoU < 0.5 is both a miss and a false positive.
    r = plate_metrics([([_truth((0, 0, 10, 10), "12A3456")], {"plates": [_pred((0, 0, 10, 4), "12A3456", 0.9)]})])
    assert r["n_exact"] == 0 and r["eir"] == 0.0 and r["plate_precision"] == 0.0 and r["char_accuracy"] == 0.0


def test_greedy_order_changes_the_result():
    truth = [_truth((0, 0, 10, 10), "12A3456")]
    good_low = _pred((0, 0, 10, 10), "12A3456", 0.5)
    bad_high = _pred((0, 0, 10, 7), "12A3450", 0.9)
    r = plate_metrics([(truth, {"plates": [good_low, bad_high]})])
    assert r["n_exact"] == 0 and r["eir"] == 0.0
    assert r["char_accuracy"] == pytest.approx(6 / 7)
    good_high = dict(good_low, score=0.95)
    r = plate_metrics([(truth, {"plates": [good_high, bad_high]})])
    assert r["eir"] == 1.0 and r["plate_precision"] == 0.5


# --------------------------------------------------------------------------------------------------- NaN


def test_nothing_at_all_is_nan():
    r = PlateMetrics().result()
    assert math.isnan(r["eir"]) and math.isnan(r["plate_precision"]) and math.isnan(r["char_accuracy"])
    assert r["n_truth"] == r["n_predicted"] == r["n_exact"] == 0
    r = plate_metrics([([], {"plates": []})])
    assert math.isnan(r["eir"]) and math.isnan(r["plate_precision"]) and math.isnan(r["char_accuracy"])


def test_no_truth_plates():
    r = plate_metrics([([], {"plates": [_pred((0, 0, 10, 10), "12A3456", 0.9)]})])
    assert math.isnan(r["eir"]) and math.isnan(r["char_accuracy"])
    assert r["plate_precision"] == 0.0


def test_no_predictions():
    r = plate_metrics([([_truth((0, 0, 10, 10), "12A3456")], {"plates": []})])
    assert math.isnan(r["plate_precision"])
    assert r["eir"] == 0.0 and r["char_accuracy"] == 0.0


def test_truth_with_empty_text_only():
    r = plate_metrics([([_truth((0, 0, 10, 10), "")], {"plates": [_pred((0, 0, 10, 10), "", 0.9)]})])
    assert r["eir"] == 1.0 and r["plate_precision"] == 1.0 and math.isnan(r["char_accuracy"])


# ---------------------------------------------------------------------------------------- with readings


def test_truth_from_a_ground_truth_reading():
    plate = Detection(spec.PLATE_ONE_LINE, (0, 0, 140, 30), 1.0)
    chars = [Detection(c, (5 + 19 * i, 5, 20 + 19 * i, 25), 1.0) for i, c in enumerate("12A3456")]
    truth = read_plates([plate, *chars], plate_score_thr=0, char_score_thr=0)
    predicted = read_plates(
        [Detection(spec.PLATE_ONE_LINE, (1, 0, 140, 31), 0.8), *(Detection(c.label, c.box, 0.9) for c in chars[:-1])]
    )
    m = PlateMetrics()
    m.add(truth, predicted)  # a ground-truth reading is accepted as truth_plates
    m.add(truth["plates"], truth)
    r = m.result()
    assert r["n_truth"] == 2 and r["n_exact"] == 1
    assert r["char_accuracy"] == pytest.approx(1 - 1 / 14)
