"""Tests of alpr.data.labelme: validation, label normalisation, folder reports (real files in tmp_path, no mocks)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from alpr import spec
from alpr.data import labelme
from alpr.data.labelme import (
    MAX_BYTES,
    MAX_SHAPES,
    AnnotationError,
    FolderReport,
    LabelmeFile,
    load_labelme,
    normalise_file,
    normalise_label,
    polygon_area,
    validate_folder,
)
from alpr.data.synth import synthesize

W, H = 64, 48


# ---------------------------------------------------------------------------------------------------- helpers


def write_image(path: Path, w: int = W, h: int = H, exif_orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (w, h), (90, 120, 150))
    if exif_orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(path, exif=exif)
    return path


def rect(label: str, x1: float, y1: float, x2: float, y2: float, **kw) -> dict:
    return {
        "label": label,
        "points": [[x1, y1], [x2, y2]],
        "shape_type": "rectangle",
        "group_id": None,
        "flags": {},
        **kw,
    }


def poly(label: str, *points, **kw) -> dict:
    return {
        "label": label,
        "points": [list(p) for p in points],
        "shape_type": "polygon",
        "group_id": None,
        "flags": {},
        **kw,
    }


def plate_shapes(text: str = "12A3456", dx: float = 0, dy: float = 0) -> list[dict]:
    """A two-line plate ``text[:3]`` / ``text[3:]`` filling most of a 64x48 image (moved by ``dx``, ``dy``)."""
    shapes = [poly("plate_two_line", (2 + dx, 2 + dy), (62 + dx, 2 + dy), (62 + dx, 46 + dy), (2 + dx, 46 + dy))]
    for i, c in enumerate(text[:3]):
        shapes.append(rect(c, 14 + 12 * i + dx, 5 + dy, 24 + 12 * i + dx, 21 + dy))
    for i, c in enumerate(text[3:]):
        shapes.append(rect(c, 6 + 13 * i + dx, 26 + dy, 17 + 13 * i + dx, 43 + dy))
    return shapes


def write_labelme(
    folder: Path,
    stem: str = "car",
    shapes: list | None = None,
    *,
    image: bool = True,
    w: int = W,
    h: int = H,
    **overrides,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        write_image(folder / f"{stem}.png", w, h)
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": plate_shapes() if shapes is None else shapes,
        "imagePath": f"{stem}.png",
        "imageData": None,
        "imageHeight": h,
        "imageWidth": w,
    }
    doc.update(overrides, shapes=doc["shapes"])
    if shapes is _DELETE:
        overrides["shapes"] = _DELETE
    for k, v in overrides.items():
        if v is _DELETE:
            del doc[k]
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


_DELETE = object()


def problem_of(path: Path, **kw) -> str:
    with pytest.raises(AnnotationError) as ei:
        load_labelme(path, **kw)
    err = ei.value
    assert err.path == path
    assert str(err) == f"{path}: {err.problem}"
    return err.problem


# ---------------------------------------------------------------------------------------------------- good files


def test_valid_file_loads(tmp_path):
    path = write_labelme(tmp_path)
    lf = load_labelme(path)
    assert isinstance(lf, LabelmeFile)
    assert lf.path == path
    assert lf.image_path == (tmp_path / "car.png").resolve()
    assert (lf.width, lf.height) == (W, H)
    assert len(lf.shapes) == 8
    assert lf.shapes[0].label == "plate_two_line" and lf.shapes[0].shape_type == "polygon"
    assert lf.shapes[1].points == ((14.0, 5.0), (24.0, 21.0))
    assert lf.class_counts() == Counter({"plate_two_line": 1, "1": 1, "2": 1, "A": 1, "3": 1, "4": 1, "5": 1, "6": 1})
    assert lf.dropped == Counter()
    r = lf.shapes[1]
    assert r.polygon() == ((14.0, 5.0), (24.0, 5.0), (24.0, 21.0), (14.0, 21.0))
    assert r.bounds() == (14.0, 5.0, 24.0, 21.0)
    assert r.area() == pytest.approx(160.0)


def test_polygon_area_shoelace():
    assert polygon_area([(0, 0), (4, 0), (0, 3)]) == pytest.approx(6.0)
    assert polygon_area([(0, 0), (0, 3), (4, 0)]) == pytest.approx(6.0)  # orientation does not matter
    assert polygon_area([(0, 0), (1, 1)]) == 0.0


def test_legacy_labels_are_mapped_and_text_regions_dropped(tmp_path):
    shapes = [
        poly("l_board", (2, 10), (62, 10), (62, 24), (2, 24)),
        rect("1", 4, 12, 10, 22),
        rect("c", 12, 12, 18, 22),
        poly("r_board", (2, 26), (40, 26), (40, 46), (2, 46)),
        rect("e", 4, 28, 10, 40),
        rect("r_s_n", 3, 27, 20, 35),
        rect("l_s_n", 3, 11, 30, 23),
        rect("l_s_n", 3, 11, 31, 23),
        rect("r_m_n", 3, 36, 30, 45),
        rect("l_m_n", 31, 11, 60, 23),
    ]
    # The plates hold 2 and 1 characters: this test is about the labels, not the plate contract.
    assert "holds 2 characters ('1C')" in problem_of(write_labelme(tmp_path / "checked", shapes=shapes))
    lf = load_labelme(write_labelme(tmp_path, shapes=shapes), check_plates=False)
    assert [s.label for s in lf.shapes] == ["plate_one_line", "1", "C", "plate_two_line", "E"]
    assert [s.index for s in lf.shapes] == [0, 1, 2, 3, 4]
    assert lf.dropped == Counter({"l_s_n": 2, "r_s_n": 1, "r_m_n": 1, "l_m_n": 1})
    assert lf.class_counts()["C"] == 1 and "c" not in lf.class_counts()


def test_normalise_label():
    assert normalise_label("A") == "A"
    assert normalise_label("a") == "A"
    assert normalise_label("l_board") == spec.PLATE_ONE_LINE
    assert normalise_label("r_board") == spec.PLATE_TWO_LINE
    assert normalise_label("r_m_n") is None
    with pytest.raises(KeyError, match="unknown label 'F'"):
        normalise_label("F")


def test_point_within_tolerance_is_clipped(tmp_path):
    shapes = plate_shapes()
    shapes[0] = poly("plate_two_line", (-0.6, 2), (W + 0.9, 2), (W + 1.0, H + 0.5), (2, H))
    lf = load_labelme(write_labelme(tmp_path, shapes=shapes))
    assert lf.shapes[0].points == ((0.0, 2.0), (float(W), 2.0), (float(W), float(H)), (2.0, float(H)))


def test_rectangle_with_reversed_corners_and_group_id(tmp_path):
    shapes = plate_shapes()
    shapes[1] = rect("1", 24, 21, 14, 5, group_id=3)
    lf = load_labelme(write_labelme(tmp_path, shapes=shapes))
    assert lf.shapes[1].bounds() == (14.0, 5.0, 24.0, 21.0)
    assert lf.shapes[1].group_id == 3


def test_image_dir_and_windows_image_path(tmp_path):
    write_image(tmp_path / "imgs" / "car.png")
    path = write_labelme(tmp_path / "ann", image=False, imagePath="..\\imgs\\car.png")
    assert load_labelme(path).image_path == (tmp_path / "imgs" / "car.png").resolve()  # relative to the JSON
    path2 = write_labelme(tmp_path / "ann2", image=False, imagePath="C:\\labelme\\photos\\car.png")
    assert load_labelme(path2, image_dir=tmp_path / "imgs").image_path == (tmp_path / "imgs" / "car.png").resolve()


def test_exif_rotated_jpeg_is_compared_with_its_displayed_size(tmp_path):
    write_image(tmp_path / "car.jpg", w=H, h=W, exif_orientation=6)  # stored 48x64, displayed 64x48
    path = write_labelme(tmp_path, image=False, imagePath="car.jpg")
    assert (load_labelme(path).width, load_labelme(path).height) == (W, H)


def test_integral_float_image_size_is_accepted(tmp_path):
    lf = load_labelme(write_labelme(tmp_path, imageWidth=float(W)))
    assert lf.width == W and isinstance(lf.width, int)


# ---------------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("key", ["shapes", "imagePath", "imageHeight", "imageWidth"])
def test_missing_required_key(tmp_path, key):
    assert problem_of(write_labelme(tmp_path, **{key: _DELETE})) == f"missing required key {key!r}"


def test_several_missing_keys_are_all_named(tmp_path):
    problem = problem_of(write_labelme(tmp_path, shapes=_DELETE, imageWidth=_DELETE))
    assert problem == "missing required keys 'shapes', 'imageWidth'"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"shapes": {"a": 1}}, "'shapes' must be a list, got dict"),
        ({"imagePath": 5}, "'imagePath' must be a non-empty string, got int"),
        ({"imagePath": ""}, "'imagePath' must be a non-empty string, got ''"),
        ({"imageWidth": "64"}, "'imageWidth' must be an integer, got str '64'"),
        ({"imageHeight": True}, "'imageHeight' must be an integer, got bool True"),
        ({"imageHeight": 47.5}, "'imageHeight' must be an integer, got float 47.5"),
        ({"imageWidth": 0}, "'imageWidth' must be positive, got 0"),
        ({"imageHeight": -48}, "'imageHeight' must be positive, got -48"),
        ({"imageData": 12}, "'imageData' must be a base64 string or null, got int"),
    ],
)
def test_wrong_header_types(tmp_path, overrides, expected):
    assert problem_of(write_labelme(tmp_path, **overrides)) == expected


def test_top_level_not_an_object(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    assert problem_of(path) == "top level must be a JSON object, got list"


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "shapes": [],\n  "imagePath": "a.png",,\n}')
    problem = problem_of(path)
    assert problem.startswith("invalid JSON at line 3, column 24:"), problem


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"label": "\xff"}')
    assert problem_of(path).startswith("not UTF-8 text")


def test_absurdly_large_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:  # sparse: 25 MB of nothing, not even JSON; only the size may be looked at
        f.truncate(25_000_000)
    assert problem_of(path) == "file is 25000000 bytes, over the limit of 20000000 bytes"
    small = write_labelme(tmp_path / "s")
    assert "over the limit of 100 bytes" in problem_of(small, max_bytes=100)


def test_missing_json_file(tmp_path):
    assert problem_of(tmp_path / "nope.json") == "file not found"


def test_no_shapes(tmp_path):
    assert problem_of(write_labelme(tmp_path, shapes=[])) == "no shapes"


def test_no_plate_shape(tmp_path):
    shapes = [s for s in plate_shapes() if not spec.is_plate(s["label"])]
    assert problem_of(write_labelme(tmp_path, shapes=shapes)) == "no plate shape (plate_one_line or plate_two_line)"


def test_no_plate_shape_is_reported_beside_other_problems(tmp_path):
    shapes = [s for s in plate_shapes() if not spec.is_plate(s["label"])]
    shapes[0] = rect("Q", 1, 1, 5, 5)
    report = validate_folder(write_labelme(tmp_path, shapes=shapes).parent, progress=False)
    assert [e.problem.split(" (")[0] for e in report.errors] == ["shapes[0]: unknown label 'Q'", "no plate shape"]
    # A plate that has a problem of its own is not also reported missing.
    shapes = plate_shapes()
    shapes[0] = poly("r_board", (1, 1), (2, 2), (3, 3))
    problem = problem_of(write_labelme(tmp_path / "b", shapes=shapes))
    assert problem == "shapes[0] ('r_board'): degenerate polygon (zero area)"


def test_only_dropped_shapes(tmp_path):
    problem = problem_of(write_labelme(tmp_path, shapes=[rect("r_s_n", 1, 1, 9, 9), rect("l_m_n", 1, 1, 9, 9)]))
    assert problem == "no shapes left after dropping 2 legacy text-region shape(s)"


def test_unknown_label(tmp_path):
    shapes = plate_shapes()
    shapes[3] = rect("Z", 38, 5, 48, 21)
    problem = problem_of(write_labelme(tmp_path, shapes=shapes))
    assert problem.startswith("shapes[3]: unknown label 'Z' (expected one of 0, 1, 2"), problem


def test_sql_injection_shaped_label_is_reported_verbatim(tmp_path):
    evil = 'A\'); DROP TABLE annotations; -- "x"'
    shapes = plate_shapes()
    shapes[2] = rect(evil, 26, 5, 36, 21)
    problem = problem_of(write_labelme(tmp_path, shapes=shapes))
    assert problem.startswith(f"shapes[2]: unknown label {evil!r} ")
    assert repr(evil) in problem


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("nope", "shapes[1]: must be an object, got str"),
        ({"points": [[1, 1], [5, 5]], "shape_type": "rectangle"}, "shapes[1]: no label"),
        ({"label": None, "points": [[1, 1], [5, 5]]}, "shapes[1]: no label"),
        ({"label": 7, "points": [[1, 1], [5, 5]]}, "shapes[1]: label must be a string, got int 7"),
        ({"label": "1", "shape_type": "rectangle"}, "shapes[1] ('1'): no points"),
        ({"label": "1", "points": "1,1,5,5"}, "shapes[1] ('1'): points must be a list, got str"),
        (
            {"label": "1", "points": [[1, 1], [5], [3, 3]]},
            "shapes[1] ('1'): points[1] must be a pair of numbers [x, y], got [5]",
        ),
        (
            {"label": "1", "points": [[1, 1], ["5", 2], [3, 3]]},
            "shapes[1] ('1'): points[1] must be a pair of numbers [x, y], got ['5', 2]",
        ),
        (
            rect("1", 1, 1, 5, 5) | {"shape_type": "circle"},
            "shapes[1] ('1'): shape_type 'circle' is not supported (expected 'polygon' or 'rectangle')",
        ),
        (
            rect("1", 1, 1, 5, 5) | {"shape_type": None},
            "shapes[1] ('1'): shape_type None is not supported (expected 'polygon' or 'rectangle')",
        ),
        (
            rect("1", 1, 1, 5, 5) | {"group_id": "g"},
            "shapes[1] ('1'): group_id must be an integer or null, got str 'g'",
        ),
        (poly("1", (1, 1), (5, 5)), "shapes[1] ('1'): a polygon needs at least 3 points, got 2"),
        (
            rect("1", 1, 1, 5, 5) | {"points": [[1, 1], [5, 5], [3, 9]]},
            "shapes[1] ('1'): a rectangle needs exactly 2 points, got 3",
        ),
        (poly("1", (1, 1), (5, 5), (9, 9)), "shapes[1] ('1'): degenerate polygon (zero area)"),
        (poly("1", (1, 1), (1, 1), (1, 1), (1, 1)), "shapes[1] ('1'): degenerate polygon (zero area)"),
        (rect("1", 5, 1, 5, 9), "shapes[1] ('1'): degenerate rectangle of size 0x8 px"),
        (rect("1", 10, 10, 70, 20), "shapes[1] ('1'): points[1] (70, 20) is outside the 64x48 image by more than 1 px"),
        (
            poly("1", (10, 10), (20, 10), (20, -1.5)),
            "shapes[1] ('1'): points[2] (20, -1.5) is outside the 64x48 image by more than 1 px",
        ),
    ],
)
def test_bad_shapes(tmp_path, shape, expected):
    shapes = plate_shapes()
    shapes[1] = shape
    assert problem_of(write_labelme(tmp_path, shapes=shapes)) == expected


def test_missing_shape_type_defaults_to_polygon_like_labelme(tmp_path):
    shapes = plate_shapes()
    del shapes[0]["shape_type"]
    assert load_labelme(write_labelme(tmp_path, shapes=shapes)).shapes[0].shape_type == "polygon"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_coordinates(tmp_path, literal):
    path = write_labelme(tmp_path)
    text = path.read_text().replace("[14, 5]", f"[14, {literal}]", 1)
    assert literal in text
    path.write_text(text)
    assert problem_of(path) == f"shapes[1] ('1'): points[0] is not finite: [14, {float(literal)!r}]"


def test_missing_image_file(tmp_path):
    path = write_labelme(tmp_path, image=False)
    assert problem_of(path) == (f"image file not found: imagePath 'car.png' (looked for {tmp_path / 'car.png'})")


def test_image_that_is_not_an_image(tmp_path):
    path = write_labelme(tmp_path, image=False)
    (tmp_path / "car.png").write_bytes(b"this is not a png")
    assert "cannot be read as an image" in problem_of(path)


def test_image_size_mismatch(tmp_path):
    path = write_labelme(tmp_path, image=False)
    write_image(tmp_path / "car.png", w=W + 10, h=H)
    assert problem_of(path) == (
        f"image size mismatch: imageWidth x imageHeight is {W}x{H}, but 'car.png' is {W + 10}x{H}"
    )


def test_image_size_read_from_header_only(tmp_path):
    """A PNG cut short inside its pixel data still has a readable size: no full decode happens."""
    write_image(tmp_path / "full.png", W, H)
    data = (tmp_path / "full.png").read_bytes()
    path = write_labelme(tmp_path, image=False)
    (tmp_path / "car.png").write_bytes(data[: data.index(b"IDAT") + 10])
    assert load_labelme(path).width == W


def test_annotation_error_attributes_and_pickling():
    import pickle

    e = AnnotationError(Path("a/b.json"), "shapes[0]: no label")
    assert (e.path, e.problem, str(e)) == (Path("a/b.json"), "shapes[0]: no label", "a/b.json: shapes[0]: no label")
    assert isinstance(e, ValueError)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.problem) == (e.path, e.problem)


# ---------------------------------------------------------------------------------------------------- plates


def crowded_plate_file(folder: Path, n_chars: int) -> Path:
    """A 64x48 image whose one plate outline (shapes[0]) holds ``n_chars`` character shapes: ``n_chars`` = 56840
    gives the 10 MB file of the defect report."""
    at = [(14.5 + i % 37, 5.5 + i % 23) for i in range(n_chars)]
    chars = [poly("1", (x, y), (x + 2, y), (x + 2, y + 4), (x, y + 4), description="", mask=None) for x, y in at]
    return write_labelme(folder, "crowded", shapes=[plate_shapes()[0], *chars])


def test_a_plate_of_56840_characters_is_refused_quickly_naming_file_and_plate(tmp_path, monkeypatch):
    path = crowded_plate_file(tmp_path, 56_840)
    assert 9_000_000 < path.stat().st_size < MAX_BYTES  # under the byte limit: the shape count refuses it
    start = time.perf_counter()
    json.loads(path.read_bytes())
    parse_s = time.perf_counter() - start

    def not_called(*args, **kwargs):
        raise AssertionError("a file over the shape limit must be refused before its shapes are checked")

    monkeypatch.setattr(labelme, "_check_shape", not_called)
    monkeypatch.setattr(labelme, "read_plates", not_called)
    start = time.perf_counter()
    problem = problem_of(path)
    report = validate_folder(tmp_path, progress=False)
    elapsed = time.perf_counter() - start
    assert problem == (
        f"56841 shapes, over the limit of {MAX_SHAPES} per file; 56840 character shapes for "
        "1 plate outline: shapes[0] ('plate_two_line') (a plate has 7 characters)"
    )
    assert [(e.path, e.problem) for e in report.errors] == [(path, problem)] and not report.ok
    # Two refusals cost about two parses of the file (checking every shape and reading the plate cost ~5x more).
    assert elapsed < 4 * parse_s + 2, (elapsed, parse_s)


def test_the_shape_limit_counts_every_shape_and_names_the_first_plates(tmp_path):
    # 125 complete plates = MAX_SHAPES shapes: accepted; one more shape (even a dropped one): refused.
    n = MAX_SHAPES // 8
    shapes = [s for i in range(n) for s in plate_shapes(f"{i % 100:02d}B{i:04d}", 64 * (i % 25), 48 * (i // 25))]
    assert len(shapes) == MAX_SHAPES
    size = {"w": 64 * 25, "h": 48 * (n // 25)}
    lf = load_labelme(write_labelme(tmp_path / "at", shapes=shapes, **size))
    assert len(lf.plates()) == n
    problem = problem_of(write_labelme(tmp_path / "over", shapes=[*shapes, rect("r_s_n", 1, 1, 9, 9)], **size))
    assert problem == (
        f"{MAX_SHAPES + 1} shapes, over the limit of {MAX_SHAPES} per file; {7 * n} character shapes "
        f"for {n} plate outlines: shapes[0] ('plate_two_line'), shapes[8] ('plate_two_line'), "
        f"shapes[16] ('plate_two_line') and {n - 3} more (a plate has 7 characters)"
    )


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("12A3456", [rect("9", 50, 5, 58, 21)], "holds 8 characters ('12A93456'), a plate has 7"),  # 4 on top
        ("12A3456", [rect("8", 14, 5, 24, 21)], "holds 8 characters ('182A3456'), a plate has 7"),  # a duplicate
        ("12A345", [], "holds 6 characters ('12A345'), a plate has 7"),
        ("1", [], "holds 1 character ('1'), a plate has 7"),
        ("", [], "holds 0 characters, a plate has 7"),
    ],
)
def test_a_plate_needs_exactly_seven_characters(tmp_path, text, extra, expected):
    problem = problem_of(write_labelme(tmp_path, shapes=plate_shapes(text) + extra))
    assert problem == (
        f"shapes[0] ('plate_two_line', box [2, 2, 62, 46]): {expected} (a character belongs to the "
        "plate whose outline contains its centre)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1A23456", "position 2 is 'A', a digit 0-9 expected; position 3 is '2', a letter A-E expected"),
        ("123A456", "position 3 is '3', a letter A-E expected; position 4 is 'A', a digit 0-9 expected"),
        ("12AB456", "position 4 is 'B', a digit 0-9 expected"),
        ("E2A3456", "position 1 is 'E', a digit 0-9 expected"),
    ],
)
def test_a_plate_text_must_be_canonical(tmp_path, text, expected):
    problem = problem_of(write_labelme(tmp_path, shapes=plate_shapes(text)))
    assert problem == (
        f"shapes[0] ('plate_two_line', box [2, 2, 62, 46]): text {text!r} (its characters in reading "
        f"order) is not a canonical plate text: {expected}"
    )


def test_characters_are_read_in_reading_order_whatever_their_order_in_the_file(tmp_path):
    shapes = plate_shapes()
    lf = load_labelme(write_labelme(tmp_path, shapes=[shapes[0], *shapes[:0:-1]]))  # characters listed backwards
    assert [s.label for s in lf.shapes] == ["plate_two_line", *"6543A21"]


def test_every_plate_is_checked_and_named(tmp_path):
    # Three plates side by side; a character centred in no plate belongs to none.
    shapes = plate_shapes("12A3456") + plate_shapes("34B567", dx=64) + plate_shapes("5C67890", dx=128)
    shapes += [rect("l_board", 194, 2, 254, 46), rect("9", 200, 10, 210, 20)]
    path = write_labelme(tmp_path, shapes=shapes, w=256)
    report = validate_folder(tmp_path, progress=False)
    assert [e.problem.split(":")[0] for e in report.errors] == [
        "shapes[8] ('plate_two_line', box [66, 2, 126, 46])",
        "shapes[15] ('plate_two_line', box [130, 2, 190, 46])",
        "shapes[23] ('l_board', box [194, 2, 254, 46])",
    ]
    assert "holds 6 characters ('34B567')" in report.errors[0].problem
    assert "text '5C67890'" in report.errors[1].problem and "holds 1 character ('9')" in report.errors[2].problem
    assert all(e.path == path for e in report.errors)
    outside = plate_shapes() + [rect("7", 62.5, 40, 64, 48)]  # centre (63.25, 44) is outside the outline
    assert load_labelme(write_labelme(tmp_path / "b", shapes=outside)).class_counts()["7"] == 1


def test_plates_are_checked_only_once_every_shape_is_well_formed(tmp_path):
    shapes = plate_shapes()
    shapes[1] = poly("1", (14, 5), (24, 5), (34, 5))  # degenerate: the plate would also count 6 characters
    assert problem_of(write_labelme(tmp_path, shapes=shapes)) == "shapes[1] ('1'): degenerate polygon (zero area)"
    report = validate_folder(tmp_path, progress=False)
    assert [e.problem for e in report.errors] == ["shapes[1] ('1'): degenerate polygon (zero area)"]


def test_check_plates_false_reads_incomplete_plates(tmp_path):
    path = write_labelme(tmp_path, shapes=plate_shapes("12A"))
    assert "holds 3 characters" in problem_of(path)
    assert len(load_labelme(path, check_plates=False).shapes) == 4
    assert validate_folder(tmp_path, progress=False, check_plates=False).ok


def test_synthetic_plates_fulfil_the_plate_contract(tmp_path):
    """What the bootstrap registers (alpr.data.synth, seed 0) passes the plate check, both layouts."""
    synthesize(tmp_path, 24, seed=0, progress=False)
    report = validate_folder(tmp_path, progress=False)
    assert report.ok, report.format()
    assert report.class_counts["plate_one_line"] > 0 and report.class_counts["plate_two_line"] > 0


def test_a_file_over_the_byte_limit_is_not_parsed(tmp_path):
    path = write_labelme(tmp_path)
    size = path.stat().st_size
    assert load_labelme(path, max_bytes=size).width == W  # the limit itself is fine
    path.write_text(path.read_text()[:-1] + " " * 10 + "x")  # not JSON any more, and 10 bytes longer
    assert problem_of(path, max_bytes=size + 5) == f"file is {size + 10} bytes, over the limit of {size + 5} bytes"
    assert problem_of(path).startswith("invalid JSON")  # parsed only under the limit
    assert MAX_BYTES == 20_000_000


# ---------------------------------------------------------------------------------------------------- folders


def test_validate_folder_collects_every_problem(tmp_path):
    write_labelme(tmp_path, "a_good")
    write_labelme(tmp_path, "b_good", shapes=plate_shapes() + [rect("r_s_n", 1, 1, 9, 9)])
    bad = plate_shapes()
    bad[1] = rect("Z", 1, 1, 5, 5)
    bad[2] = poly("2", (1, 1), (2, 2), (3, 3))
    bad[4] = rect("3", 1, 1, 80, 5)
    write_labelme(tmp_path, "c_three_problems", shapes=bad)
    write_labelme(tmp_path, "d_no_image", image=False)
    (tmp_path / "e_broken.json").write_text("{")
    write_labelme(tmp_path, "f_mismatch", w=W, h=H)
    write_image(tmp_path / "f_mismatch.png", 10, 10)
    (tmp_path / "notes.txt").write_text("not labelme")

    report = validate_folder(tmp_path, progress=False)
    assert isinstance(report, FolderReport)
    assert not report.ok
    assert report.checked == 6
    assert [lf.path.name for lf in report.files] == ["a_good.json", "b_good.json"]
    assert [p.name for p in report.bad_files()] == [
        "c_three_problems.json",
        "d_no_image.json",
        "e_broken.json",
        "f_mismatch.json",
    ]
    problems = [(e.path.name, e.problem) for e in report.errors]
    assert len(problems) == 6
    assert problems[0][1].startswith("shapes[1]: unknown label 'Z'")
    assert problems[1] == ("c_three_problems.json", "shapes[2] ('2'): degenerate polygon (zero area)")
    assert problems[2][1].startswith("shapes[4] ('3'): points[1] (80, 5) is outside")
    assert problems[3][1].startswith("image file not found")
    assert problems[4][1].startswith("invalid JSON at line 1, column 2")
    assert problems[5][1].startswith("image size mismatch")
    assert report.class_counts["plate_two_line"] == 2 and report.class_counts["A"] == 2
    assert report.dropped == Counter({"r_s_n": 1})

    text = report.format()
    assert "6 file(s) checked, 2 good, 4 with problems (6 problem(s)) -> REFUSED" in text
    assert "plate_two_line" in text and "r_s_n" in text
    for e in report.errors:
        assert str(e.path) in text and e.problem in text


def test_validate_folder_ok(tmp_path):
    write_labelme(tmp_path, "one")
    write_labelme(tmp_path, "two")
    report = validate_folder(tmp_path, progress=True)
    assert report.ok and not report.errors and len(report.files) == 2
    assert sum(report.class_counts.values()) == 16
    assert "-> OK" in report.format()


def test_validate_folder_reports_shared_image_names(tmp_path):
    write_labelme(tmp_path, "a")
    write_image(tmp_path / "imgs" / "car.png")
    write_labelme(tmp_path, "b", image=False, imagePath="imgs/car.png")
    write_labelme(tmp_path, "c", image=False, imagePath="a.png")
    report = validate_folder(tmp_path, progress=False)
    assert [p.name for p in report.bad_files()] == ["c.json"]
    assert report.errors[0].problem == f"image file name 'a.png' is also used by {tmp_path / 'a.json'}"


def test_empty_folder_is_not_ok(tmp_path):
    report = validate_folder(tmp_path, progress=False)
    assert not report.ok and report.checked == 0
    assert "no labelme files" in report.format()


def test_validate_folder_needs_a_folder(tmp_path):
    with pytest.raises(NotADirectoryError):
        validate_folder(tmp_path / "missing", progress=False)


# ---------------------------------------------------------------------------------------------------- normalise


def test_normalise_file_round_trips(tmp_path):
    shapes = [
        poly("r_board", (-0.5, 2), (62, 2), (62, 46), (2, 46)),
        rect("a", 14, 5, 24, 21, description="x"),
        rect("l_s_n", 1, 1, 9, 9),
    ]
    path = write_labelme(tmp_path, shapes=shapes, imageData="aGVsbG8=", flags={"night": True})
    lf = load_labelme(path, check_plates=False)  # a plate of one character: normalising does not need more
    doc = normalise_file(lf)
    assert doc["imageData"] is None
    assert doc["flags"] == {"night": True} and doc["version"] == "5.4.1"
    assert [s["label"] for s in doc["shapes"]] == ["plate_two_line", "A"]
    assert doc["shapes"][0]["points"][0] == [0.0, 2.0]
    assert doc["shapes"][1]["description"] == "x"
    assert (doc["imageWidth"], doc["imageHeight"], doc["imagePath"]) == (W, H, "car.png")
    assert normalise_file(lf, image_path="elsewhere.png")["imagePath"] == "elsewhere.png"
    assert lf.raw["shapes"][0]["label"] == "r_board"  # the source is not modified
    assert "imageData" not in lf.raw  # not kept in memory

    out = tmp_path / "norm"
    out.mkdir()
    (out / "car.json").write_text(json.dumps(doc, allow_nan=False))
    write_image(out / "car.png")
    again = load_labelme(out / "car.json", check_plates=False)
    assert [s.label for s in again.shapes] == ["plate_two_line", "A"]
    assert again.dropped == Counter()
    assert all(math.isfinite(c) for s in again.shapes for p in s.points for c in p)
