"""Tests of alpr.model.reading: from detections to readings (docs/PLATE_SPEC.md "A reading")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alpr import spec
from alpr.model.reading import MIN_REPORTED_CHARACTERS, Detection, plate_texts, read_arrays, read_plates

# ------------------------------------------------------------------------------------------ geometry helper
#
# Plates are laid out in millimetres in the plate's own frame (PLATE_SPEC sizes), then optionally warped by a
# perspective (the plate rectangle goes to a quadrilateral given in plate-fraction units), then scaled, rotated
# and moved into the image. Character boxes are the axis-aligned bounds of their warped corners, as an annotator
# or a detector would draw them.


def _char_slots(n: int, layout: str) -> list[tuple[float, float, float, float]]:
    """(cx, cy, w, h) in plate millimetres for ``n`` characters of ``layout`` (3 on top for two_line)."""
    if layout == "one_line":
        pitch, gap, w, h = 62.0, 24.0, 48.0, 80.0
        start = (520.0 - (6 * pitch + gap)) / 2.0
        return [(start + i * pitch + (gap if i >= 3 else 0.0), 55.0, w, h) for i in range(n)]
    top = [(167.5 + (i - 1) * 46.0, 42.0, 36.0, 50.0) for i in range(min(n, 3))]
    rest = n - 3
    bottom = [(167.5 + (i - 1.5) * 68.0, 118.0, 56.0, 86.0) for i in range(max(rest, 0))]
    return top + bottom


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 projective map taking the 4 ``src`` points to the 4 ``dst`` points."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def make_plate(
    text: str = "12A3456",
    layout: str = "one_line",
    *,
    centre: tuple[float, float] = (400.0, 300.0),
    scale: float = 0.8,
    angle_deg: float = 0.0,
    quad: list[tuple[float, float]] | None = None,
    polygon: bool = False,
    plate_score: float = 0.9,
    char_score: float = 0.8,
) -> tuple[Detection, list[Detection]]:
    """A plate and its characters (in text order), as detections in image pixels.

    ``angle_deg`` rotates in-plane (image y points down, so positive turns clockwise on screen); ``quad`` warps
    the plate rectangle onto a quadrilateral (top-left, top-right, bottom-right, bottom-left) in fractions of the
    plate's width/height; ``polygon`` attaches the warped outline to the plate (ground truth).
    """
    pw, ph = spec.PLATE_SIZE_MM[layout]
    rect = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    hmat = _homography(rect, np.asarray(quad, float)) if quad is not None else np.eye(3)
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])

    def to_image(pts_mm: np.ndarray) -> np.ndarray:
        frac = pts_mm / np.array([pw, ph])
        hom = np.c_[frac, np.ones(len(frac))] @ hmat.T
        warped = hom[:, :2] / hom[:, 2:] * np.array([pw, ph])
        return (warped - np.array([pw, ph]) / 2.0) * scale @ rot.T + np.asarray(centre)

    def bounds(pts: np.ndarray) -> tuple[float, float, float, float]:
        return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())

    outline = to_image(np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float))
    label = spec.PLATE_ONE_LINE if layout == "one_line" else spec.PLATE_TWO_LINE
    plate = Detection(label, bounds(outline), plate_score, tuple(map(tuple, outline)) if polygon else None)
    chars = []
    for ch, (cx, cy, w, h) in zip(text, _char_slots(len(text), layout)):
        corners = np.array(
            [[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]]
        )
        chars.append(Detection(ch, bounds(to_image(corners)), char_score))
    return plate, chars


def _read_one(plate: Detection, chars: list[Detection], **kw) -> dict:
    reading = read_plates([plate, *chars], **kw)
    assert len(reading["plates"]) == 1
    return reading["plates"][0]


def _centre_y(d: Detection) -> float:
    return (d.box[1] + d.box[3]) / 2


SKEWS = {
    "keystone": [(0.0, 0.0), (1.0, 0.12), (1.0, 0.88), (0.0, 1.0)],  # right side further away
    "sheared": [(0.08, 0.0), (1.0, 0.05), (0.92, 1.0), (0.0, 0.92)],
    "tilted_back": [(0.1, 0.0), (0.9, 0.0), (1.0, 1.0), (0.0, 1.0)],  # top edge further away
}


# ------------------------------------------------------------------------------------------------- layouts


def test_one_line_plate():
    plate, chars = make_plate("12A3456", "one_line")
    p = _read_one(plate, chars[::-1])  # input order does not matter
    assert p["text"] == "12A3456"
    assert p["layout"] == "one_line"
    assert p["valid"] is True
    assert list(p) == ["text", "layout", "valid", "box", "score", "characters"]
    assert p["box"] == [round(v, 2) for v in plate.box] and len(p["box"]) == 4
    assert all(isinstance(v, float) for v in p["box"])
    assert p["score"] == 0.9
    assert [c["char"] for c in p["characters"]] == list("12A3456")
    assert set(p["characters"][0]) == {"char", "box", "score"}
    assert p["characters"][0]["box"] == [round(v, 2) for v in chars[0].box]


def test_two_line_plate():
    plate, chars = make_plate("98E7654", "two_line")
    p = _read_one(plate, chars[::-1])
    assert p["text"] == "98E7654"
    assert p["layout"] == "two_line"
    assert p["valid"] is True
    assert [c["char"] for c in p["characters"]] == list("98E7654")


@pytest.mark.parametrize("angle", [-15, -10, -5, 5, 10, 15])
def test_rotated_one_line_plate_reads_in_order(angle):
    plate, chars = make_plate("12A3456", "one_line", angle_deg=angle)
    if abs(angle) == 15:
        # The geometry defeats a naive y threshold: the end characters differ in y by more than a character height.
        height = chars[0].box[3] - chars[0].box[1]
        assert abs(_centre_y(chars[0]) - _centre_y(chars[-1])) > height
    assert _read_one(plate, chars)["text"] == "12A3456"
    assert _read_one(plate, chars[::-1])["text"] == "12A3456"


@pytest.mark.parametrize("angle", [-15, -7, 7, 15])
def test_rotated_two_line_plate(angle):
    plate, chars = make_plate("12A3456", "two_line", angle_deg=angle)
    assert _read_one(plate, chars[::-1])["text"] == "12A3456"


@pytest.mark.parametrize("skew", sorted(SKEWS))
@pytest.mark.parametrize("with_polygon", [False, True])
def test_perspective_skewed_two_line_plate(skew, with_polygon):
    plate, chars = make_plate("45C6789", "two_line", quad=SKEWS[skew], angle_deg=8, polygon=with_polygon)
    p = _read_one(plate, chars[::-1])
    assert p["text"] == "45C6789"
    assert p["valid"] is True


@pytest.mark.parametrize("skew", sorted(SKEWS))
def test_perspective_skewed_rotated_one_line_plate(skew):
    plate, chars = make_plate("45C6789", "one_line", quad=SKEWS[skew], angle_deg=-12)
    assert _read_one(plate, chars[::-1])["text"] == "45C6789"


def test_random_poses_with_detector_jitter():
    """Many plates, rotations within ±15°, perspective and box noise of ±8% of a character height."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        layout = str(rng.choice(spec.LAYOUTS))
        text = f"{rng.integers(10, 100)}{rng.choice(list('ABCDE'))}{rng.integers(1000, 10000)}"
        d = rng.uniform(0, 0.1, size=8)
        quad = [(d[0], d[1]), (1 - d[2], d[3]), (1 - d[4], 1 - d[5]), (d[6], 1 - d[7])]
        plate, chars = make_plate(
            text,
            layout,
            angle_deg=rng.uniform(-15, 15),
            quad=quad,
            scale=rng.uniform(0.3, 1.5),
            polygon=bool(rng.integers(2)),
        )
        noisy = []
        for c in chars:
            h = c.box[3] - c.box[1]
            dx, dy = rng.uniform(-0.08, 0.08, size=2) * h
            noisy.append(Detection(c.label, (c.box[0] + dx, c.box[1] + dy, c.box[2] + dx, c.box[3] + dy), c.score))
        rng.shuffle(noisy)
        assert _read_one(plate, noisy)["text"] == text, (layout, text)


def test_layout_comes_from_label_lines_from_geometry():
    # A two-line plate mislabelled as one_line is still read in two lines; the layout reported is the label's.
    plate, chars = make_plate("12A3456", "two_line", angle_deg=10)
    wrong = Detection(spec.PLATE_ONE_LINE, plate.box, plate.score)
    p = _read_one(wrong, chars)
    assert p["text"] == "12A3456"
    assert p["layout"] == "one_line"


# ------------------------------------------------------------------------------- characters and validity


def test_duplicate_class_at_one_position_keeps_higher_score():
    plate, chars = make_plate("12A3456", "one_line", angle_deg=5)
    three = chars[3]
    weaker_eight = Detection("8", three.box, 0.5)  # same place, lower score than "3" (0.8)
    assert _read_one(plate, [*chars, weaker_eight])["text"] == "12A3456"
    x1, y1, x2, y2 = three.box
    stronger_eight = Detection("8", (x1 + 1, y1, x2 + 1, y2), 0.95)  # slightly shifted, IoU still high
    p = _read_one(plate, [*chars, stronger_eight])
    assert p["text"] == "12A8456"
    assert len(p["characters"]) == 7


def test_char_nms_can_be_turned_off():
    plate, chars = make_plate("12A3456", "one_line")
    dup = Detection("8", chars[3].box, 0.5)
    assert len(_read_one(plate, [*chars, dup], char_nms_iou=None, char_containment=None)["text"]) == 8


def test_missing_character_reported_invalid():
    plate, chars = make_plate("12A3456", "one_line", angle_deg=-15)
    p = _read_one(plate, chars[:3] + chars[4:])
    assert p["text"] == "12A456"
    assert p["valid"] is False
    plate, chars = make_plate("12A3456", "two_line", angle_deg=12)
    p = _read_one(plate, chars[1:])  # first character of the top line missing
    assert p["text"] == "2A3456"
    assert p["valid"] is False


def test_extra_character_reported_invalid():
    plate, chars = make_plate("12A3456", "one_line")
    # A spurious "0" in the space between "A" and "3", not overlapping either.
    left, right = chars[2].box[2], chars[3].box[0]
    extra = Detection("0", (left + 2, chars[3].box[1], right - 2, chars[3].box[3]), 0.6)
    p = _read_one(plate, [extra, *chars])
    assert p["text"] == "12A03456"
    assert p["valid"] is False
    assert len(p["characters"]) == 8


def test_plate_without_characters_is_reported():
    plate, _ = make_plate()
    p = _read_one(plate, [])
    assert p == {
        "text": "",
        "layout": "one_line",
        "valid": False,
        "box": [round(v, 2) for v in plate.box],
        "score": 0.9,
        "characters": [],
    }


def test_min_characters_leaves_out_plates_read_with_fewer():
    empty, _ = make_plate("11A1111", "one_line", centre=(300, 200), plate_score=0.95)
    plate, chars = make_plate("22B2222", "two_line", centre=(700, 500), plate_score=0.6)
    dets = [empty, plate, *chars]
    assert plate_texts(read_plates(dets)) == ["", "22B2222"]  # 0, the default: every plate (ground truth)
    assert plate_texts(read_plates(dets, min_characters=MIN_REPORTED_CHARACTERS)) == ["22B2222"]
    assert plate_texts(read_plates(dets, min_characters=7)) == ["22B2222"]
    assert read_plates(dets, min_characters=8) == {"plates": []}
    # counted after de-duplication: a duplicate glyph does not make a one-character plate two
    one = chars[0]
    dup = Detection("8", one.box, one.score - 0.1)
    assert read_plates([plate, one, dup], min_characters=2) == {"plates": []}
    with pytest.raises(ValueError, match="min_characters must be >= 0, got -1"):
        read_plates(dets, min_characters=-1)


def test_characters_outside_any_plate_are_ignored():
    plate, chars = make_plate("12A3456", "one_line", centre=(300, 200))
    _, stray = make_plate("77B7777", "one_line", centre=(300, 600))
    reading = read_plates([plate, *chars, *stray])
    assert plate_texts(reading) == ["12A3456"]


def test_only_characters_gives_no_plates():
    _, chars = make_plate()
    assert read_plates(chars) == {"plates": []}


def test_two_plates_each_get_their_own_characters():
    p1, c1 = make_plate("11A1111", "one_line", centre=(300, 200), angle_deg=10, plate_score=0.7)
    p2, c2 = make_plate("22B2222", "two_line", centre=(700, 500), angle_deg=-10, plate_score=0.95)
    reading = read_plates([*c2, p1, *c1, p2])
    assert plate_texts(reading) == ["22B2222", "11A1111"]
    assert [p["layout"] for p in reading["plates"]] == ["two_line", "one_line"]


def test_character_in_nested_plates_goes_to_smallest():
    plate, chars = make_plate("12A3456", "one_line", centre=(400, 300))
    big = Detection(spec.PLATE_TWO_LINE, (0, 0, 800, 600), 0.99)
    reading = read_plates([big, plate, *chars])
    assert [(p["layout"], p["text"]) for p in reading["plates"]] == [("two_line", ""), ("one_line", "12A3456")]


def test_polygon_containment_for_ground_truth():
    # Two rotated ground-truth plates close together: their boxes overlap but their outlines do not.
    p1, c1 = make_plate(
        "12A3456", "one_line", centre=(400, 300), angle_deg=15, polygon=True, plate_score=1, char_score=1
    )
    p2, c2 = make_plate(
        "78B9012", "one_line", centre=(400 + 50, 300 + 110), angle_deg=15, polygon=True, plate_score=1, char_score=1
    )
    b1, b2 = p1.box, p2.box
    assert min(b1[2], b2[2]) > max(b1[0], b2[0]) and min(b1[3], b2[3]) > max(b1[1], b2[1])  # boxes overlap
    reading = read_plates([p1, p2, *c1, *c2], plate_score_thr=0, char_score_thr=0)
    assert plate_texts(reading) == ["12A3456", "78B9012"]

    # A character in the plate's box but outside its rotated outline is not the plate's.
    corner = Detection("9", (p1.box[0], p1.box[1], p1.box[0] + 10, p1.box[1] + 10), 1.0)
    assert plate_texts(read_plates([p1, *c1, corner], plate_score_thr=0, char_score_thr=0)) == ["12A3456"]
    boxed = Detection(p1.label, p1.box, 1.0)  # same plate without its polygon: the box contains the corner
    assert plate_texts(read_plates([boxed, *c1, corner], plate_score_thr=0, char_score_thr=0)) == ["912A3456"]


def test_polygon_point_on_edge_is_inside():
    square = ((0, 0), (10, 0), (10, 10), (0, 10))
    plate = Detection(spec.PLATE_ONE_LINE, (0, 0, 10, 10), 1.0, square)
    on_edge = Detection("1", (8, 4, 12, 6), 1.0)  # centre (10, 5) on the right edge
    assert plate_texts(read_plates([plate, on_edge], plate_score_thr=0, char_score_thr=0)) == ["1"]


# -------------------------------------------------------------------------------- thresholds, NaN, sorting


def test_empty_input():
    assert read_plates([]) == {"plates": []}
    assert read_arrays(np.zeros((0, 4)), np.zeros((0,), int), np.zeros((0,))) == {"plates": []}
    assert read_arrays(np.zeros((0,)), np.zeros((0,), int), np.zeros((0,))) == {"plates": []}
    assert plate_texts({"plates": []}) == []


def test_nan_scores_never_pass():
    plate, chars = make_plate()
    nan_plate = Detection(plate.label, plate.box, float("nan"))
    assert read_plates([nan_plate, *chars], plate_score_thr=0, char_score_thr=0) == {"plates": []}
    chars[2] = Detection(chars[2].label, chars[2].box, float("nan"))
    assert _read_one(plate, chars, char_score_thr=0)["text"] == "123456"


def test_nan_box_is_ignored():
    plate, chars = make_plate()
    bad = Detection("9", (float("nan"), 0, 1, 1), 0.9)
    assert _read_one(plate, [*chars, bad])["text"] == "12A3456"


def test_score_thresholds():
    plate, chars = make_plate(char_score=0.8)
    chars[0] = Detection(chars[0].label, chars[0].box, 0.29)
    chars[1] = Detection(chars[1].label, chars[1].box, 0.3)  # exactly at the threshold: kept
    assert _read_one(plate, chars)["text"] == "2A3456"
    weak = Detection(plate.label, plate.box, 0.2)
    assert read_plates([weak, *chars]) == {"plates": []}
    assert plate_texts(read_plates([weak, *chars], plate_score_thr=0.1, char_score_thr=0)) == ["12A3456"]


def test_plates_sorted_by_descending_score():
    dets = []
    for i, s in enumerate([0.4, 0.95, 0.7]):
        p, c = make_plate(f"{i}{i}A{i}{i}{i}{i}", "one_line", centre=(300, 150 + 200 * i), plate_score=s)
        dets += [p, *c]
    reading = read_plates(dets)
    assert [p["score"] for p in reading["plates"]] == [0.95, 0.7, 0.4]
    assert plate_texts(reading) == ["11A1111", "22A2222", "00A0000"]


def test_rounding_and_json():
    plate = Detection(spec.PLATE_ONE_LINE, (10.123456, 20.987654, 300.5555, 80.0), 0.987654321)
    char = Detection("7", (20.111, 30.119, 40.0, 70.0), 0.123456789)
    reading = read_plates([plate, char])
    p = reading["plates"][0]
    assert p["box"] == [10.12, 20.99, 300.56, 80.0]
    assert p["score"] == 0.9877
    # the character's score (0.12) is below the default threshold, so it is dropped:
    assert p["characters"] == []
    assert json.loads(json.dumps(reading)) == reading
    p = read_plates([plate, char], char_score_thr=0)["plates"][0]
    assert p["characters"] == [{"char": "7", "box": [20.11, 30.12, 40.0, 70.0], "score": 0.1235}]


# ---------------------------------------------------------------------------------------------- arrays API


def test_read_arrays_matches_read_plates():
    p1, c1 = make_plate("12A3456", "one_line", centre=(300, 200), angle_deg=-9)
    p2, c2 = make_plate("65E4321", "two_line", centre=(700, 450), angle_deg=6, plate_score=0.6)
    dets = [p1, *c1, p2, *c2]
    bboxes = np.array([d.box for d in dets], np.float32)
    labels = np.array([spec.class_id(d.label) for d in dets])
    scores = np.array([d.score for d in dets], np.float32)
    reading = read_arrays(bboxes, labels, scores)
    assert plate_texts(reading) == ["12A3456", "65E4321"]
    assert plate_texts(read_arrays(bboxes, labels, scores, plate_score_thr=0.7)) == ["12A3456"]


def test_read_arrays_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        read_arrays(np.zeros((2, 5)), np.zeros(2, int), np.zeros(2))
    with pytest.raises(ValueError, match="length"):
        read_arrays(np.zeros((2, 4)), np.zeros(3, int), np.zeros(2))
    with pytest.raises(ValueError, match="range"):
        read_arrays(np.zeros((1, 4)), np.array([17]), np.ones(1))
    with pytest.raises(ValueError, match="range"):
        read_arrays(np.zeros((1, 4)), np.array([-1]), np.ones(1))


def test_detection_validates_label():
    with pytest.raises(ValueError, match="l_board"):
        Detection("l_board", (0, 0, 1, 1))
    with pytest.raises(ValueError):
        Detection("1", (0, 0, 1))
    with pytest.raises(ValueError):
        Detection(spec.PLATE_ONE_LINE, (0, 0, 1, 1), 1.0, ((0, 0), (1, 1)))


# ------------------------------------------------------------------------------ fragments and plate syntax


def _inner(box: tuple[float, float, float, float], frac: float = 0.6) -> tuple[float, float, float, float]:
    """A box inside ``box`` covering ``frac`` of its width and height (a detected fragment of the glyph)."""
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * frac, (y2 - y1) * frac
    return (x1, y1, x1 + w, y1 + h)


def test_fragment_inside_a_glyph_is_not_a_second_character():
    """IoU of a 60% x 60% fragment with its glyph is 0.36 (< char_nms_iou) but it lies fully inside: dropped."""
    plate, chars = make_plate("12A3456", "one_line")
    fragment = Detection("9", _inner(chars[4].box), 0.6)
    assert _read_one(plate, [*chars, fragment])["text"] == "12A3456"
    # With containment off the fragment becomes an extra character and the plate is reported invalid, not dropped.
    p = _read_one(plate, [*chars, fragment], char_containment=None)
    assert len(p["text"]) == 8 and p["valid"] is False


def test_containment_keeps_touching_neighbours():
    """Adjacent glyphs of a tightly set two-line plate overlap a little: they stay two characters."""
    plate, chars = make_plate("12A3456", "two_line")
    wide = []
    for c in chars:  # widen every box by 20% so neighbours overlap
        x1, y1, x2, y2 = c.box
        d = 0.1 * (x2 - x1)
        wide.append(Detection(c.label, (x1 - d, y1, x2 + d, y2), c.score))
    assert _read_one(plate, wide)["text"] == "12A3456"


def test_syntax_takes_the_letter_detected_at_position_three():
    """'8' beats 'B' at the type position; the syntax (letter there) takes 'B' detected at the same place."""
    plate, chars = make_plate("12B3456", "one_line")
    b = chars[2]
    eight = Detection("8", b.box, 0.7)
    weak_b = Detection("B", b.box, 0.2)  # below char_score_thr: only usable as an alternative
    p = _read_one(plate, [*chars[:2], eight, weak_b, *chars[3:]])
    assert p["text"] == "12B3456" and p["valid"] is True
    assert p["characters"][2] == {"char": "B", "box": [round(v, 2) for v in b.box], "score": 0.2}
    assert _read_one(plate, [*chars[:2], eight, weak_b, *chars[3:]], syntax=False)["text"] == "1283456"


def test_syntax_takes_digits_outside_position_three():
    plate, chars = make_plate("12A3086", "one_line")
    zero = chars[4]
    d = Detection("D", zero.box, 0.9)
    p = _read_one(plate, [*chars[:4], d, Detection("0", zero.box, 0.4), *chars[5:]])
    assert p["text"] == "12A3086"


def test_syntax_never_invents_or_drops_characters():
    """No alternative of the right kind: the text stays as detected and invalid; other lengths are untouched."""
    plate, chars = make_plate("12A3456", "one_line")
    p = _read_one(plate, [*chars[:2], Detection("7", chars[2].box, 0.9), *chars[3:]])
    assert p["text"] == "1273456" and p["valid"] is False
    six = [*chars[:2], Detection("8", chars[2].box, 0.9), Detection("B", chars[2].box, 0.2), *chars[3:6]]
    assert _read_one(plate, six)["text"] == "128345"  # 6 characters: no syntax applied


def test_alternatives_below_alt_score_thr_are_ignored():
    plate, chars = make_plate("12B3456", "one_line")
    b = chars[2]
    p = _read_one(plate, [*chars[:2], Detection("8", b.box, 0.7), Detection("B", b.box, 0.03), *chars[3:]])
    assert p["text"] == "1283456" and p["valid"] is False
