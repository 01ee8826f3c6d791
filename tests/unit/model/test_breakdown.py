"""Tests of alpr.model.breakdown: buckets, plate angles and brightness, the per-bucket metrics (hand-made plates)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from alpr import spec
from alpr.model.breakdown import (
    ANGLE_BUCKETS,
    BRIGHTNESS_BUCKETS,
    FIGURES,
    GROUPS,
    WIDTH_BUCKETS,
    Breakdown,
    BreakdownMetrics,
    breakdown_from_coco,
    bucket_of,
    format_breakdown,
    plate_angles,
    plate_attributes,
    plate_brightness,
)
from alpr.model.metrics import PlateMetrics

W, H = 1000, 500
NAN = float("nan")


def rect_points(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def truth(x1, y1, x2, y2, text="12A3456", layout="one_line", points="rect"):
    plate = {"box": [x1, y1, x2, y2], "text": text, "layout": layout}
    if points == "rect":
        plate["points"] = rect_points(x1, y1, x2, y2)
    elif points is not None:
        plate["points"] = points
    return plate


def pred(x1, y1, x2, y2, text="12A3456", score=0.9, layout="one_line"):
    return {"box": [x1, y1, x2, y2], "text": text, "score": score, "layout": layout}


def projected_plate(layout, yaw=0.0, pitch=0.0, roll=0.0, scale=0.5, centre=(500.0, 250.0), pinhole=None):
    """The 4 corners (TL, TR, BR, BL) of a plate of the layout's physical size, turned by yaw (about the vertical
    axis), then pitch (about the horizontal axis), then roll (about the optical axis), seen by an orthographic camera
    (``scale`` px per mm), or with ``pinhole=(horizontal field of view in degrees, plate width / frame width of 1920
    px)`` by a pinhole camera with the plate on its optical axis (as alpr.data.synth's ROAD conditions draw it)."""
    w, h = spec.PLATE_SIZE_MM[layout]
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]], float)
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    turned = corners @ (rz @ rx @ ry).T
    if pinhole is None:
        xy = turned[:, :2] * scale
    else:
        fov, fraction = pinhole
        focal = 960 / math.tan(math.radians(fov) / 2)
        camera = turned + [0.0, 0.0, focal * w / (fraction * 1920)]
        xy = focal * camera[:, :2] / camera[:, 2:3]
    return (xy + np.asarray(centre)).tolist()


def figures(b: Breakdown, group: str, bucket: str) -> dict:
    return b.groups[group][bucket]


def assert_nan(v):
    assert isinstance(v, float) and math.isnan(v)


# ------------------------------------------------------------------------------------------------ buckets


def test_buckets_are_half_open_and_nan_is_in_none():
    assert bucket_of(0.0, WIDTH_BUCKETS) == "<5%"
    assert bucket_of(0.0499, WIDTH_BUCKETS) == "<5%"
    assert bucket_of(0.05, WIDTH_BUCKETS) == "5-10%"
    assert bucket_of(0.1, WIDTH_BUCKETS) == "10-20%"
    assert bucket_of(0.2, WIDTH_BUCKETS) == ">=20%"
    assert bucket_of(1.0, WIDTH_BUCKETS) == ">=20%"
    assert bucket_of(NAN, WIDTH_BUCKETS) is None
    assert bucket_of(-0.1, WIDTH_BUCKETS) is None
    assert [b.name for b in ANGLE_BUCKETS] == ["<10°", "10-20°", "20-30°", ">=30°"]
    assert bucket_of(9.99, ANGLE_BUCKETS) == "<10°" and bucket_of(30.0, ANGLE_BUCKETS) == ">=30°"
    assert bucket_of(69.9, BRIGHTNESS_BUCKETS) == "dark"
    assert bucket_of(70.0, BRIGHTNESS_BUCKETS) == "normal"
    assert bucket_of(185.0, BRIGHTNESS_BUCKETS) == "bright" and bucket_of(255.0, BRIGHTNESS_BUCKETS) == "bright"


# ------------------------------------------------------------------------------------------------ angles


@pytest.mark.parametrize("layout", spec.LAYOUTS)
def test_a_plate_facing_the_camera_has_no_angle(layout):
    roll, tilt = plate_angles(projected_plate(layout), layout)
    assert roll == pytest.approx(0.0, abs=1e-9) and tilt == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("layout", spec.LAYOUTS)
@pytest.mark.parametrize(("yaw", "pitch"), [(30.0, 0.0), (0.0, 25.0), (35.0, 0.0), (0.0, 12.0)])
def test_yaw_or_pitch_alone_is_the_tilt(layout, yaw, pitch):
    roll, tilt = plate_angles(projected_plate(layout, yaw=yaw, pitch=pitch), layout)
    assert tilt == pytest.approx(max(yaw, pitch), abs=1e-4)
    assert roll == pytest.approx(0.0, abs=1e-6)


def test_roll_is_the_text_direction_and_does_not_tilt():
    roll, tilt = plate_angles(projected_plate("one_line", roll=15.0), "one_line")
    assert roll == pytest.approx(15.0) and tilt == pytest.approx(0.0, abs=1e-4)
    roll, _ = plate_angles(projected_plate("two_line", roll=-12.0), "two_line")
    assert roll == pytest.approx(12.0)


def test_yaw_and_pitch_together_give_the_angle_of_the_plate_normal():
    _, tilt = plate_angles(projected_plate("one_line", yaw=20.0, pitch=15.0, roll=8.0), "one_line")
    assert tilt == pytest.approx(math.degrees(math.acos(math.cos(math.radians(20)) * math.cos(math.radians(15)))))


@pytest.mark.parametrize("fov", [40.0, 90.0])
@pytest.mark.parametrize("fraction", [0.03, 0.2])
@pytest.mark.parametrize(("yaw", "pitch"), [(35.0, 0.0), (0.0, 25.0), (30.0, 20.0)])
def test_the_estimate_holds_under_perspective(fov, fraction, yaw, pitch):
    """Through a pinhole camera (perspective taper), plates up to 20 % of the frame width: within 1.5°."""
    _, tilt = plate_angles(projected_plate("one_line", yaw, pitch, pinhole=(fov, fraction)), "one_line")
    true_tilt = math.degrees(math.acos(math.cos(math.radians(yaw)) * math.cos(math.radians(pitch))))
    assert tilt == pytest.approx(true_tilt, abs=1.5)


def test_corner_order_and_winding_do_not_matter():
    pts = projected_plate("one_line", yaw=25.0, roll=10.0)
    expected = plate_angles(pts, "one_line")
    for variant in (pts[::-1], pts[2:] + pts[:2], [pts[0], pts[2], pts[1], pts[3]]):  # reversed, rotated, crossed
        assert plate_angles(variant, "one_line") == pytest.approx(expected)


def test_polygons_of_other_than_four_points_use_their_minimum_area_rectangle():
    x1, y1, x2, y2 = 100.0, 100.0, 360.0, 155.0  # 260 x 55: the one-line aspect 520 : 110
    five = [[x1, y1], [(x1 + x2) / 2, y1], [x2, y1], [x2, y2], [x1, y2]]
    roll, tilt = plate_angles(five, "one_line")
    assert roll == pytest.approx(0.0, abs=1e-3) and tilt == pytest.approx(0.0, abs=0.5)
    roll, tilt = plate_angles([[0, 0], [100, 0], [0, 60]], "one_line")  # a triangle still has a rectangle
    assert math.isfinite(roll) and math.isfinite(tilt)


def test_a_plate_wider_than_its_layout_reads_as_pitched():
    # 520 x 55 px: twice the one-line aspect, i.e. the height foreshortened by cos 60°.
    _, tilt = plate_angles(rect_points(0, 0, 520, 55), "one_line")
    assert tilt == pytest.approx(60.0)


@pytest.mark.parametrize(
    "points",
    [None, [], [[0, 0], [10, 0]], [[0, 0], [10, 0], [10, NAN], [0, 5]], [[5, 5]] * 4, [[0, 0], [1, 1], [2, 2]]],
    ids=["none", "empty", "two-points", "nan", "one-place", "collinear"],
)
def test_no_angle_without_a_usable_outline(points):
    roll, tilt = plate_angles(points, "one_line")
    assert_nan(roll) and assert_nan(tilt)


def test_an_unknown_layout_has_a_roll_but_no_tilt():
    roll, tilt = plate_angles(projected_plate("one_line", roll=5.0), "three_line")
    assert roll == pytest.approx(5.0)
    assert_nan(tilt)


def test_a_malformed_outline_is_refused():
    with pytest.raises(ValueError, match=r"\[\[x, y\], \.\.\.\]"):
        plate_angles([[0, 0, 0], [1, 1, 1], [2, 2, 2]], "one_line")


# ------------------------------------------------------------------------------------------------ brightness


def test_brightness_is_the_mean_of_the_pixels_the_box_touches():
    img = np.zeros((100, 200), np.uint8)
    img[10:20, 30:50] = 200
    assert plate_brightness([30, 10, 50, 20], img) == pytest.approx(200.0)
    # A fractional box touches one more column of zeros on the left: 20 of 21 columns at 200.
    assert plate_brightness([29.5, 10, 50, 20], img) == pytest.approx(200 * 20 / 21)
    # Clipped to the image; outside it there is nothing to measure.
    assert plate_brightness([-50, -50, 10, 10], img) == pytest.approx(0.0)
    assert_nan(plate_brightness([300, 10, 400, 20], img))
    assert_nan(plate_brightness([NAN, 10, 40, 20], img))
    assert_nan(plate_brightness([40, 10, 40, 20], img))  # zero width


def test_brightness_needs_a_grey_image():
    with pytest.raises(ValueError, match=r"2-D grey image \(H, W\), got shape \(10, 10, 3\)"):
        plate_brightness([0, 0, 5, 5], np.zeros((10, 10, 3), np.uint8))


# ------------------------------------------------------------------------------------------------ attributes


def test_plate_attributes():
    img = np.full((H, W), 50, np.uint8)
    a = plate_attributes(truth(100, 100, 160, 120, layout="one_line"), (W, H), img)
    assert a.width_fraction == pytest.approx(0.06)
    assert a.brightness == pytest.approx(50.0)
    assert a.layout == "one_line"
    # 60 x 20 px is narrower than 520 : 110, so the width reads as foreshortened (yaw).
    assert a.tilt_deg == pytest.approx(math.degrees(math.acos((60 / 20) / (520 / 110))))
    assert a.angle_deg == max(a.roll_deg, a.tilt_deg)
    bare = plate_attributes(truth(100, 100, 160, 120, points=None), (W, H))
    assert bare.width_fraction == pytest.approx(0.06)
    assert_nan(bare.angle_deg) and assert_nan(bare.brightness)
    inverted = plate_attributes(truth(160, 100, 100, 120, points=None), (W, H))
    assert inverted.width_fraction == 0.0


def test_plate_attributes_refuse_bad_input():
    with pytest.raises(KeyError, match="plate has no 'layout'"):
        plate_attributes({"box": [0, 0, 1, 1]}, (W, H))
    with pytest.raises(KeyError, match="plate has no 'box'"):
        plate_attributes({"layout": "one_line"}, (W, H))
    with pytest.raises(ValueError, match="image_wh must be positive"):
        plate_attributes(truth(0, 0, 10, 10), (0, H))
    with pytest.raises(ValueError, match=r"image_wh must be \(width, height\)"):
        plate_attributes(truth(0, 0, 10, 10), (W,))
    with pytest.raises(ValueError, match="image_gray is 200x100 pixels but image_wh says 1000x500"):
        plate_attributes(truth(0, 0, 10, 10), (W, H), np.zeros((100, 200), np.uint8))


# ------------------------------------------------------------------------------------------------ breakdown


def scene():
    """One 1000 x 500 image: A (4 % wide, dark, read), B (8 %, normal, misread), C (30 %, bright, missed), a false
    detection D (15 % wide, two-line). C is turned by 25° (yaw)."""
    img = np.full((H, W), 120, np.uint8)
    img[100:110, 10:57] = 30  # A
    img[300:500, 600:900] = 230  # C
    c_points = projected_plate("one_line", yaw=25.0, scale=600 / 520 * 0.5, centre=(750, 400))
    c_box = [min(p[0] for p in c_points), min(p[1] for p in c_points)]
    c_box += [max(p[0] for p in c_points), max(p[1] for p in c_points)]
    truths = [
        truth(10, 100, 57, 110, "11A1111", "one_line"),  # 47 x 10 px: about the one-line aspect, 6° of yaw
        truth(200, 100, 280, 140.6, "22B2222", "two_line"),  # the two-line aspect: no angle
        truth(*c_box, "33C3333", "one_line", points=c_points),
    ]
    preds = [
        pred(10, 100, 57, 110, "11A1111", 0.9),
        pred(201, 101, 279, 139, "22B2228", 0.8, "two_line"),
        pred(400, 0, 550, 60, "44D4444", 0.7, "two_line"),
    ]
    return truths, {"plates": preds}, img


def test_breakdown_of_one_image():
    truths, reading, img = scene()
    m = BreakdownMetrics()
    m.add(truths, reading, (W, H), img)
    b = m.result()
    assert list(b.groups) == list(GROUPS)
    width = b.groups["width"]
    assert list(width) == [bk.name for bk in WIDTH_BUCKETS]
    assert width["<5%"] == {
        "n_truth": 1,
        "recall": 1.0,
        "eir": 1.0,
        "plate_precision": 1.0,
        "char_accuracy": 1.0,
        "n_predicted": 1,
        "n_matched": 1,
        "n_exact": 1,
    }
    five = width["5-10%"]
    assert (five["n_truth"], five["recall"], five["eir"], five["plate_precision"]) == (1, 1.0, 0.0, 0.0)
    assert five["char_accuracy"] == pytest.approx(1 - 1 / 7)
    ten = width["10-20%"]  # only the false detection D
    assert (ten["n_truth"], ten["n_predicted"], ten["plate_precision"]) == (0, 1, 0.0)
    assert_nan(ten["recall"]) and assert_nan(ten["eir"]) and assert_nan(ten["char_accuracy"])
    big = width[">=20%"]  # C: missed
    assert (big["n_truth"], big["recall"], big["eir"], big["char_accuracy"], big["n_predicted"]) == (1, 0, 0, 0, 0)
    assert_nan(big["plate_precision"])

    layout = b.groups["layout"]
    assert list(layout) == list(spec.LAYOUTS)
    assert (layout["one_line"]["n_truth"], layout["one_line"]["n_predicted"]) == (2, 1)
    assert (layout["two_line"]["n_truth"], layout["two_line"]["n_predicted"]) == (1, 2)  # B's reading and D
    assert layout["two_line"]["plate_precision"] == 0.0

    angle = b.groups["angle"]
    assert angle["<10°"]["n_truth"] == 2 and angle["20-30°"]["n_truth"] == 1
    # D has no angle: the angle buckets hold the matched predictions only.
    assert sum(r["n_predicted"] for r in angle.values()) == 2
    assert angle["20-30°"]["recall"] == 0.0

    bright = b.groups["brightness"]
    assert [bright[k]["n_truth"] for k in ("dark", "normal", "bright")] == [1, 1, 1]
    assert bright["dark"]["eir"] == 1.0 and bright["normal"]["eir"] == 0.0 and bright["bright"]["recall"] == 0.0
    assert sum(r["n_predicted"] for r in bright.values()) == 2

    assert b.overall == {**b.overall, "n_images": 1, "n_truth": 3, "n_predicted": 3, "n_matched": 2, "n_exact": 1}
    assert b.overall["recall"] == pytest.approx(2 / 3)
    assert b.unassigned == dict.fromkeys(GROUPS, 0)


def test_a_matched_prediction_counts_in_its_truths_buckets():
    # Truth 9.8 % wide, one-line; the prediction is 10.2 % wide and says two-line: both count with the truth.
    m = BreakdownMetrics()
    m.add([truth(100, 100, 198, 120)], {"plates": [pred(98, 100, 200, 120, layout="two_line")]}, (W, H))
    b = m.result()
    assert b.groups["width"]["5-10%"]["n_predicted"] == 1 and b.groups["width"]["10-20%"]["n_predicted"] == 0
    assert b.groups["layout"]["one_line"]["n_predicted"] == 1 and b.groups["layout"]["two_line"]["n_predicted"] == 0


def test_an_unmatched_prediction_of_an_unknown_layout_gets_its_own_bucket():
    m = BreakdownMetrics()
    m.add([], {"plates": [pred(0, 0, 100, 20, layout="three_line")]}, (W, H))
    layout = m.result().groups["layout"]
    assert list(layout) == [*spec.LAYOUTS, "three_line"]
    assert layout["three_line"]["n_predicted"] == 1 and layout["three_line"]["plate_precision"] == 0.0


def test_nothing_added_gives_empty_buckets():
    b = BreakdownMetrics().result()
    for group in GROUPS:
        for row in b.table(group):
            assert (row["n_truth"], row["n_predicted"], row["n_matched"], row["n_exact"]) == (0, 0, 0, 0)
            for k in ("recall", "eir", "plate_precision", "char_accuracy"):
                assert_nan(row[k])
    assert b.overall["n_images"] == 0
    json.dumps(b.to_json(), allow_nan=False)
    assert "overall: 0 images" in format_breakdown(b)


def test_no_detections_and_no_truth():
    m = BreakdownMetrics()
    m.add([truth(10, 10, 110, 30)], {"plates": []}, (W, H))
    m.add([], {"plates": []}, (W, H))
    row = m.result().groups["width"]["10-20%"]
    assert (row["n_truth"], row["recall"], row["eir"], row["char_accuracy"]) == (1, 0.0, 0.0, 0.0)
    assert_nan(row["plate_precision"])
    assert m.result().overall["n_images"] == 2


def test_unknown_attributes_leave_plates_unassigned():
    m = BreakdownMetrics()
    plates = [truth(10, 10, 110, 30, points=None), truth(NAN, 10, 110, 30, points=None)]
    m.add(plates, {"plates": [pred(10, 10, 110, 30, score=NAN)]}, (W, H))  # no image, a NaN score
    b = m.result()
    assert b.unassigned == {"width": 1, "angle": 2, "layout": 0, "brightness": 2}
    assert sum(r["n_truth"] for r in b.groups["angle"].values()) == 0
    assert b.groups["width"]["10-20%"]["n_exact"] == 1  # a NaN score still matches (scores only order matching)
    assert "(2 plates unknown, in no bucket)" in format_breakdown(b)


def test_bad_plates_are_named():
    m = BreakdownMetrics()
    with pytest.raises(KeyError, match="predicted plate 0 has no 'score'"):
        m.add([], {"plates": [{"box": [0, 0, 1, 1], "text": "", "layout": "one_line"}]}, (W, H))
    with pytest.raises(KeyError, match="ground-truth plate 1 has no 'layout'"):
        m.add([truth(0, 0, 1, 1), {"box": [0, 0, 1, 1], "text": ""}], {"plates": []}, (W, H))
    with pytest.raises(KeyError, match="reading has no 'plates'"):
        m.add([], {}, (W, H))


def test_buckets_add_up_to_the_plate_metrics_on_random_images():
    """Many crowded images with overlapping plates and tied scores: per-bucket matching repeats the image's own
    (BreakdownMetrics raises otherwise) and the buckets add up to PlateMetrics over everything."""
    rng = np.random.default_rng(3)
    m, ref = BreakdownMetrics(), PlateMetrics()
    for _ in range(200):
        truths = []
        for _ in range(rng.integers(0, 5)):
            x, y, w = rng.uniform(0, 700), rng.uniform(0, 400), rng.uniform(5, 300)
            truths.append(truth(x, y, x + w, y + w / 4, str(rng.integers(3)), str(rng.choice(spec.LAYOUTS))))
        preds = []
        for t in truths:
            if rng.random() < 0.8:
                x1, y1, x2, y2 = (v + rng.normal(0, 0.08 * (t["box"][2] - t["box"][0])) for v in t["box"])
                preds.append(pred(x1, y1, x2, y2, str(rng.integers(3)), float(rng.choice([0.5, 0.9])), t["layout"]))
        for _ in range(rng.integers(0, 3)):
            x, y, w = rng.uniform(0, 700), rng.uniform(0, 400), rng.uniform(5, 300)
            preds.append(pred(x, y, x + w, y + w / 4, "1", float(rng.random()), str(rng.choice(spec.LAYOUTS))))
        m.add(truths, {"plates": preds}, (W, H), np.zeros((H, W), np.uint8))
        ref.add(truths, {"plates": preds})
    b, r = m.result(), ref.result()
    for key in ("n_truth", "n_predicted", "n_matched", "n_exact"):
        assert b.overall[key] == r[key]
    for group in ("width", "layout"):
        for key in ("n_truth", "n_predicted", "n_matched", "n_exact"):
            assert sum(row[key] for row in b.table(group)) == r[key], (group, key)
    for group in ("angle", "brightness"):  # predictions there: the matched ones only
        assert sum(row["n_truth"] for row in b.table(group)) == r["n_truth"]
        assert sum(row["n_predicted"] for row in b.table(group)) == r["n_matched"]
    assert b.overall["eir"] == r["eir"] and b.overall["char_accuracy"] == r["char_accuracy"]


# ------------------------------------------------------------------------------------------------ the result


def test_table_scalars_and_json_round_trip():
    truths, reading, img = scene()
    m = BreakdownMetrics()
    m.add(truths, reading, (W, H), img)
    b = m.result()
    rows = b.table("width")
    assert [r["bucket"] for r in rows] == ["<5%", "5-10%", "10-20%", ">=20%"]
    assert set(rows[0]) == {"bucket", *FIGURES}
    with pytest.raises(KeyError, match="no grouping 'size'"):
        b.table("size")
    scalars = b.scalars()
    assert list(scalars) == [
        "recall_width_lt5",
        "eir_width_lt5",
        "recall_width_5_10",
        "eir_width_5_10",
        "recall_width_10_20",
        "eir_width_10_20",
        "recall_width_ge20",
        "eir_width_ge20",
    ]
    assert scalars["recall_width_lt5"] == 1.0 and math.isnan(scalars["recall_width_10_20"])
    assert "recall_angle_20_30" in b.scalars(("recall",), "angle")
    with pytest.raises(KeyError, match="has no bucket keys"):
        b.scalars(group="layout")
    with pytest.raises(KeyError, match="unknown figure 'mAP'"):
        b.scalars(("mAP",))
    data = json.loads(json.dumps(b.to_json(), allow_nan=False, sort_keys=True))  # as model.json is written
    assert list(data["groups"]["width"]) != list(b.groups["width"])
    assert data["groups"]["width"]["10-20%"]["recall"] is None
    back = Breakdown.from_json(data)
    assert back.unassigned == b.unassigned and back.overall.keys() == b.overall.keys()
    assert list(back.groups) == list(GROUPS)
    assert all(list(back.groups[g]) == list(b.groups[g]) for g in GROUPS)  # table order again
    for group in GROUPS:
        for name, figs in b.groups[group].items():
            for k, v in figs.items():
                assert back.groups[group][name][k] == pytest.approx(v, nan_ok=True)
                assert type(back.groups[group][name][k]) is type(v)


def test_format_breakdown():
    truths, reading, img = scene()
    m = BreakdownMetrics()
    m.add(truths, reading, (W, H), img)
    text = format_breakdown(m.result())
    assert text.startswith("overall: 1 images, 3 plates, 3 predicted: recall 0.667  EIR 0.333")
    for title in ("plate width / image width", "plate angle", "layout", "mean grey level"):
        assert title in text
    for name in ("<5%", ">=20%", "<10°", "one_line", "two_line", "dark", "bright"):
        assert name in text
    line = next(ln for ln in text.splitlines() if ln.startswith("10-20%"))
    assert line.split() == ["10-20%", "0", "-", "-", "0.000", "-", "1", "0", "0"]
    assert "nan" not in text.lower()


# ------------------------------------------------------------------------------------------------ COCO


def write_split(tmp_path, images):
    path = tmp_path / "annotations" / "val.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return path


def test_breakdown_from_coco(tmp_path):
    truths, reading, img = scene()
    (tmp_path / "images").mkdir()
    assert cv2.imwrite(str(tmp_path / "images" / "a.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    images = [
        {"id": 1, "file_name": "images/a.png", "width": W, "height": H, "plates": truths},
        {"id": 2, "file_name": "images/a.png", "width": W, "height": H, "plates": []},
    ]
    path = write_split(tmp_path, images)
    b = breakdown_from_coco(path, tmp_path, [reading, {"plates": []}])
    m = BreakdownMetrics()
    m.add(truths, reading, (W, H), img)
    m.add([], {"plates": []}, (W, H), img)
    assert b.to_json() == m.result().to_json()
    assert [b.groups["brightness"][k]["n_truth"] for k in ("dark", "normal", "bright")] == [1, 1, 1]
    no_images = breakdown_from_coco(path, None, [reading, {"plates": []}])
    assert no_images.unassigned["brightness"] == 3


def test_breakdown_from_coco_names_what_is_wrong(tmp_path):
    path = write_split(tmp_path, [{"id": 7, "file_name": "images/missing.png", "width": W, "height": H}])
    with pytest.raises(ValueError, match="1 images but 0 readings"):
        breakdown_from_coco(path, tmp_path, [])
    with pytest.raises(ValueError, match=r"missing\.png: not a readable image .*image 7"):
        breakdown_from_coco(path, tmp_path, [{"plates": []}])
    bad = write_split(tmp_path / "b", [{"id": 8, "file_name": "x.png"}])
    with pytest.raises(ValueError, match="image 8 has no valid width/height"):
        breakdown_from_coco(bad, None, [{"plates": []}])
