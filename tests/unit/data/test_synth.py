"""Tests of :mod:`alpr.data.synth`: determinism, the labelme contract of PLATE_SPEC.md and argument checks."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from PIL import Image

from alpr import spec
from alpr.data import synth

SEED = 5
INDICES = range(8)


@pytest.fixture(scope="module")
def samples() -> list[tuple[np.ndarray, dict[str, Any]]]:
    """A few rendered samples shared by the contract tests."""
    return [synth.render_sample(index, SEED) for index in INDICES]


def _plates(labelme: dict[str, Any]) -> list[dict[str, Any]]:
    return [shape for shape in labelme["shapes"] if spec.is_plate(shape["label"])]


def _characters(labelme: dict[str, Any], group_id: int) -> list[dict[str, Any]]:
    return [s for s in labelme["shapes"] if spec.is_character(s["label"]) and s["group_id"] == group_id]


def _centre(shape: dict[str, Any]) -> np.ndarray:
    return np.asarray(shape["points"], dtype=float).mean(axis=0)


def _area(points: list[list[float]]) -> float:
    """Shoelace area of a polygon."""
    xy = np.asarray(points, dtype=float)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _reading_order(plate: dict[str, Any], chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort a plate's characters in reading order along the plate's own axes (it may be rotated)."""
    tl, tr, br, bl = np.asarray(plate["points"], dtype=float)
    across, down = (tr - tl) + (br - bl), (bl - tl) + (br - tr)
    by_row = sorted(chars, key=lambda c: float(_centre(c) @ down))
    lines = [by_row] if plate["label"] == spec.PLATE_ONE_LINE else [by_row[:3], by_row[3:]]
    return [c for line in lines for c in sorted(line, key=lambda c: float(_centre(c) @ across))]


def test_random_plate_text_is_canonical_and_varied() -> None:
    rng = np.random.default_rng(0)
    texts = [synth.random_plate_text(rng) for _ in range(300)]
    assert all(spec.is_valid_text(text) for text in texts)
    assert len(set(texts)) > 290
    assert {text[2] for text in texts} == set("ABCDE")


def test_same_seed_gives_identical_sample() -> None:
    image_a, labelme_a = synth.render_sample(3, 11)
    image_b, labelme_b = synth.render_sample(3, 11)
    assert np.array_equal(image_a, image_b)
    assert json.dumps(labelme_a) == json.dumps(labelme_b)


def test_different_seeds_or_indices_differ() -> None:
    image, labelme = synth.render_sample(0, 1)
    for other_image, other_labelme in (synth.render_sample(0, 2), synth.render_sample(1, 1)):
        assert other_image.shape != image.shape or not np.array_equal(other_image, image)
        assert other_labelme["shapes"] != labelme["shapes"]


def test_synthesize_is_byte_identical_and_independent_of_n(tmp_path: Path) -> None:
    first = synth.synthesize(tmp_path / "a", 3, seed=4, progress=False)
    second = synth.synthesize(tmp_path / "b", 2, seed=4, progress=False)
    assert [p.name for p in first] == ["synth_000000.json", "synth_000001.json", "synth_000002.json"]
    for json_path in second:
        twin = tmp_path / "a" / json_path.name
        assert json_path.read_bytes() == twin.read_bytes()
        assert json_path.with_suffix(".jpg").read_bytes() == twin.with_suffix(".jpg").read_bytes()


def test_synthesize_from_a_first_index_draws_the_same_samples(tmp_path: Path) -> None:
    whole = synth.synthesize(tmp_path / "a", 4, seed=4, progress=False)
    tail = synth.synthesize(tmp_path / "b", 2, seed=4, progress=False, first=2)
    assert [p.name for p in tail] == [p.name for p in whole[2:]]
    for json_path in tail:
        twin = tmp_path / "a" / json_path.name
        assert json_path.read_bytes() == twin.read_bytes()
        assert json_path.with_suffix(".jpg").read_bytes() == twin.with_suffix(".jpg").read_bytes()


def test_a_mixture_shares_the_samples_between_its_presets_in_order() -> None:
    assert synth.mixture("road", 5) == [("road", synth.ROAD, 0, 5)]
    assert synth.mixture("classic+road", 5) == [("classic", synth.CLASSIC, 0, 3), ("road", synth.ROAD, 3, 2)]
    assert synth.mixture("road+classic", 0) == [("road", synth.ROAD, 0, 0), ("classic", synth.CLASSIC, 0, 0)]
    with pytest.raises(ValueError, match="unknown synthetic conditions 'rainy'; expected one of classic, road"):
        synth.mixture("classic+rainy", 4)
    with pytest.raises(ValueError, match="unknown synthetic conditions ''"):
        synth.mixture("classic+", 4)
    with pytest.raises(ValueError, match="'road\\+road' name a preset twice"):
        synth.mixture("road+road", 4)
    with pytest.raises(ValueError, match="n must be a non-negative integer, got -1"):
        synth.mixture("road", -1)


def test_synthesize_writes_labelme_beside_jpeg(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    paths = synth.synthesize(out, 2, seed=9, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "synth_000000.jpg", "synth_000000.json", "synth_000001.jpg", "synth_000001.json",
    ]  # fmt: skip
    for json_path in paths:
        labelme = json.loads(json_path.read_text(encoding="utf-8"))
        assert labelme["imagePath"] == json_path.with_suffix(".jpg").name
        with Image.open(out / labelme["imagePath"]) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == (labelme["imageWidth"], labelme["imageHeight"])
    assert synth.synthesize(tmp_path / "empty", 0, progress=False) == []


def test_labelme_document(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for index, (image, labelme) in zip(INDICES, samples):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert set(labelme) == {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
        assert labelme["version"] == "5.4.1" and labelme["flags"] == {} and labelme["imageData"] is None
        assert labelme["imagePath"] == f"synth_{index:06d}.jpg"
        assert (labelme["imageHeight"], labelme["imageWidth"]) == image.shape[:2]
        assert 512 <= max(image.shape[:2]) <= 800


def test_shapes_are_valid_polygons(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        assert labelme["shapes"]
        for shape in labelme["shapes"]:
            assert set(shape) == {"label", "points", "group_id", "shape_type", "flags", "description"}
            assert shape["label"] in spec.CLASSES
            assert shape["shape_type"] == "polygon" and shape["flags"] == {} and shape["description"] == ""
            assert len(shape["points"]) == 4
            assert all(round(v, 2) == v for point in shape["points"] for v in point)


def test_each_plate_holds_a_valid_text_in_reading_order(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        plates = _plates(labelme)
        assert 1 <= len(plates) <= 2
        assert sorted(p["group_id"] for p in plates) == list(range(len(plates)))
        for plate in plates:
            chars = _characters(labelme, plate["group_id"])
            ordered = _reading_order(plate, chars)
            assert spec.is_valid_text("".join(c["label"] for c in ordered))
            assert ordered == chars  # shapes are written in reading order
        assert len(labelme["shapes"]) == 8 * len(plates)


def test_points_lie_inside_the_image(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        width, height = labelme["imageWidth"], labelme["imageHeight"]
        for shape in labelme["shapes"]:
            for x, y in shape["points"]:
                assert 0 <= x <= width and 0 <= y <= height


def test_character_centres_lie_in_their_own_plate_only(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        outlines = {p["group_id"]: PolygonPath(np.asarray(p["points"])) for p in _plates(labelme)}
        for shape in labelme["shapes"]:
            if spec.is_character(shape["label"]):
                centre = _centre(shape)
                for group_id, outline in outlines.items():
                    assert outline.contains_point(centre) == (group_id == shape["group_id"])


def test_character_polygons_are_tight(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        for plate in _plates(labelme):
            plate_area = _area(plate["points"])
            areas = [_area(c["points"]) for c in _characters(labelme, plate["group_id"])]
            assert all(0 < area < 0.2 * plate_area for area in areas)
            assert sum(areas) < 0.85 * plate_area


def test_glyph_ink_fills_its_box() -> None:
    """A character's box is its ink's bounding box: the cropped glyph has ink on all four edges."""
    for font in synth.font_paths():
        for char in spec.CHARACTERS:
            ink = synth._glyph_ink(font, char, 0) >= synth._INK_THRESHOLD
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), (font, char)


def test_plate_polygons_are_clockwise_from_top_left(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        for plate in _plates(labelme):
            tl, tr, br, bl = np.asarray(plate["points"], dtype=float)
            assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]


def test_plates_do_not_overlap(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    for _, labelme in samples:
        plates = _plates(labelme)
        if len(plates) == 2:
            a, b = (np.asarray(p["points"]) for p in plates)
            apart_x = a[:, 0].max() < b[:, 0].min() or b[:, 0].max() < a[:, 0].min()
            apart_y = a[:, 1].max() < b[:, 1].min() or b[:, 1].max() < a[:, 1].min()
            assert apart_x or apart_y


def test_layouts_argument_controls_plate_labels(samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    seen = {p["label"] for _, labelme in samples for p in _plates(labelme)}
    assert seen == set(spec.PLATE_LABELS)
    for layout, label in (("one_line", spec.PLATE_ONE_LINE), ("two_line", spec.PLATE_TWO_LINE)):
        for index in range(3):
            _, labelme = synth.render_sample(index, SEED, layouts=[layout])
            assert {p["label"] for p in _plates(labelme)} == {label}


def test_photos_and_fonts_come_from_installed_packages() -> None:
    photos = synth.photo_paths()
    assert any(p.name == "astronaut.png" for p in photos) and any(p.name == "grace_hopper.jpg" for p in photos)
    for name in ("camera.png", "logo.png"):  # greyscale and RGBA sources become RGB
        photo = synth._load_photo(next(p for p in photos if p.name == name))
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    fonts = [Path(f).name for f in synth.font_paths()]
    assert "DejaVuSans-Bold.ttf" in fonts
    assert not any(name.startswith(("cmex", "cmsy", "LastResort", "STIXSiz")) for name in fonts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "-1"),
        ({"n": 1, "layouts": ["one_line", "three_line"]}, "three_line"),
        ({"n": 1, "layouts": []}, "layout"),
        ({"n": 1, "layouts": "one_line"}, "one_line"),
        ({"n": 1, "seed": -3}, "-3"),
        ({"n": 1, "first": -2}, "first must be a non-negative integer, got -2"),
    ],
)
def test_synthesize_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth.synthesize(tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


def test_render_sample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="index"):
        synth.render_sample(-1, 0)
    with pytest.raises(ValueError, match="four_line"):
        synth.render_sample(0, 0, layouts=["four_line"])


def test_sources_override_fonts_photos_and_size() -> None:
    """A held-out set draws from other fonts, photographs and frame sizes than the defaults."""
    photos = tuple(p for p in synth.photo_paths() if p.name == "coins.png")
    font = next(f for f in synth.font_paths() if Path(f).name == "DejaVuSerif.ttf")
    sources = synth.Sources(fonts=(font,), photos=photos, long_side=(1280, 1280), aspects=((16, 9),))
    for index in range(3):
        image, labelme = synth.render_sample(index, SEED, sources=sources)
        assert image.shape == (720, 1280, 3)
        assert (labelme["imageWidth"], labelme["imageHeight"]) == (1280, 720)
    default_image, _ = synth.render_sample(0, SEED)
    assert synth.render_sample(0, SEED, sources=synth.Sources())[0].tobytes() == default_image.tobytes()


def test_sources_reject_unusable_fonts_and_empty_lists() -> None:
    import matplotlib

    symbol_font = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "cmex10.ttf")
    with pytest.raises(ValueError, match="cannot draw"):
        synth.Sources(fonts=(symbol_font,))
    with pytest.raises(ValueError, match="fonts is empty"):
        synth.Sources(fonts=())
    with pytest.raises(ValueError, match="photos is empty"):
        synth.Sources(photos=())


def test_fonts_include_the_font_packages_and_no_italics() -> None:
    names = [Path(f).name for f in synth.font_paths()]
    assert "Roboto-Regular.ttf" in names and "SourceSansPro-Regular.ttf" in names
    assert not any("Italic" in n or n.endswith("It.ttf") for n in names)


def test_fonts_include_caladea_droid_mono_and_opencv_stroke_faces() -> None:
    """Serif, monospaced, rounded, hand-drawn and vector stroke faces widen the glyph designs the model sees."""
    fonts = synth.font_paths()
    names = {Path(f).name for f in fonts}
    assert {"Caladea-Regular.ttf", "DroidSansMono.ttf", "FredokaOne-Regular.ttf"} <= names
    assert {"hershey:simplex", "hershey:triplex"} <= set(fonts)
    for face in synth.HERSHEY_FACES:
        thin, thick = synth._glyph_ink(face, "8", 0), synth._glyph_ink(face, "8", 6)
        assert thin.shape[0] > 0.5 * synth._REF_FONT_SIZE  # drawn at about the reference height
        assert (thick >= synth._INK_THRESHOLD).sum() > 1.5 * (thin >= synth._INK_THRESHOLD).sum()


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two coverage masks resized to a common 64 x 64 grid."""
    a_ink = cv2.resize(a, (64, 64), interpolation=cv2.INTER_AREA) >= synth._INK_THRESHOLD
    b_ink = cv2.resize(b, (64, 64), interpolation=cv2.INTER_AREA) >= synth._INK_THRESHOLD
    return float((a_ink & b_ink).sum() / (a_ink | b_ink).sum())


def test_distort_glyph_changes_the_shape_but_keeps_the_character(monkeypatch: pytest.MonkeyPatch) -> None:
    """A distorted glyph is tight, differs from the original, stays close to it, and depends only on the rng.

    The elastic and stroke-weight changes are forced on (their largest sizes as configured), so that every draw
    exercises them."""
    monkeypatch.setattr(synth, "GLYPH_ELASTIC", (1.0, synth.GLYPH_ELASTIC[1]))
    monkeypatch.setattr(synth, "GLYPH_WEIGHT", (1.0, synth.GLYPH_WEIGHT[1]))
    font = next(f for f in synth.font_paths() if Path(f).name == "DejaVuSans.ttf")
    for char in ("2", "9", "B"):
        ink = synth._glyph_ink(font, char, 4)
        for seed in range(5):
            distorted = synth._distort_glyph(np.random.default_rng(seed), ink, shear=0.15)
            again = synth._distort_glyph(np.random.default_rng(seed), ink, shear=0.15)
            assert np.array_equal(distorted, again)
            mask = distorted >= synth._INK_THRESHOLD
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
            assert distorted.shape != ink.shape or not np.array_equal(distorted, ink)
            assert 0.5 < _mask_iou(distorted, ink) < 1.0, (char, seed)
    # The elastic and weight changes never turn one character into another: a distorted glyph stays nearer its
    # own glyph than any other's, all slanted alike (the slant is the plate's, shared by all of its glyphs).
    inks = {c: synth._glyph_ink(font, c, 4) for c in spec.CHARACTERS}
    rng = np.random.default_rng(7)
    for char, ink in inks.items():
        shear = float(rng.uniform(-synth.GLYPH_SHEAR[1], synth.GLYPH_SHEAR[1]))
        distorted = synth._distort_glyph(rng, ink, shear=shear)
        with monkeypatch.context() as m:
            m.setattr(synth, "GLYPH_ELASTIC", (0.0, synth.GLYPH_ELASTIC[1]))
            m.setattr(synth, "GLYPH_WEIGHT", (0.0, synth.GLYPH_WEIGHT[1]))
            slanted = {c: synth._distort_glyph(np.random.default_rng(0), g, shear=shear) for c, g in inks.items()}
        nearest = max(slanted, key=lambda c: _mask_iou(distorted, slanted[c]))
        assert nearest == char, (char, shear)


def test_shear_leans_the_glyph(monkeypatch: pytest.MonkeyPatch) -> None:
    """A positive shear moves the top of a glyph right of its bottom (a right-leaning slant)."""
    monkeypatch.setattr(synth, "GLYPH_ELASTIC", (0.0, 0.035))  # shear only
    monkeypatch.setattr(synth, "GLYPH_WEIGHT", (0.0, 0.035))
    font = next(f for f in synth.font_paths() if Path(f).name == "DejaVuSans.ttf")
    ink = synth._glyph_ink(font, "1", 4)

    def lean(shear: float) -> float:
        """Mean x of the top fifth of the ink minus that of the bottom fifth, in glyph heights."""
        mask = synth._distort_glyph(np.random.default_rng(0), ink, shear=shear) >= synth._INK_THRESHOLD
        fifth = len(mask) // 5
        top_x = np.flatnonzero(mask[:fifth].any(axis=0)).mean()
        bottom_x = np.flatnonzero(mask[-fifth:].any(axis=0)).mean()
        return float(top_x - bottom_x) / len(mask)

    upright = lean(0.0)
    assert lean(0.2) > upright + 0.1 and lean(-0.2) < upright - 0.1


def test_sources_can_draw_faces_as_designed() -> None:
    """``distort_glyphs=False`` draws the same frame and first plate text with undistorted glyphs (a held-out
    set's choice); the random draws after the first plate differ."""
    distorted = synth.render_sample(3, SEED)
    plain = synth.render_sample(3, SEED, sources=synth.Sources(distort_glyphs=False))
    assert plain[0].shape == distorted[0].shape

    def first_plate(labelme: dict[str, Any]) -> list[str]:
        return [s["label"] for s in labelme["shapes"] if s["group_id"] == 0]

    assert first_plate(plain[1]) == first_plate(distorted[1])
    assert not np.array_equal(plain[0], distorted[0])


def test_face_replay_names_the_face_of_every_drawn_plate() -> None:
    """``benchmarks/face_errors.py`` learns each plate's type face by replaying a sample: the replay draws the same
    labelme annotation as the original, names one face per plate shape, and leaves the synthesizer unpatched."""
    import importlib.util

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "face_errors.py"
    module_spec = importlib.util.spec_from_file_location("face_errors", script)
    face_errors = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(face_errors)
    known = {Path(f).stem if not f.startswith("hershey:") else f for f in synth.font_paths()}
    stroke = synth._random_stroke
    for index in range(6):
        faces, labelme = face_errors.replay_faces(index, SEED)
        assert labelme == synth.render_sample(index, SEED)[1]
        n_plates = sum(s["label"].startswith("plate_") for s in labelme["shapes"])
        assert len(faces) == n_plates >= 1
        assert set(faces) <= known
        assert synth._random_stroke is stroke


# ------------------------------------------------------------------------------------------------ road conditions

ROAD_SEED = 3
ROAD_INDICES = range(30)


@pytest.fixture(scope="module")
def road_samples() -> list[tuple[np.ndarray, dict[str, Any]]]:
    """ROAD samples shared by the road tests."""
    return [synth.render_sample(index, ROAD_SEED, conditions=synth.ROAD) for index in ROAD_INDICES]


def _width_fraction(plate: dict[str, Any], labelme: dict[str, Any]) -> float:
    """The plate's bounding-box width over the frame width (what alpr.model.breakdown buckets)."""
    xs = [x for x, _ in plate["points"]]
    return (max(xs) - min(xs)) / labelme["imageWidth"]


def _edge_lengths(points: list[list[float]]) -> tuple[float, float, float, float]:
    """Lengths of a quad's top, right, bottom and left edges (points TL, TR, BR, BL)."""
    tl, tr, br, bl = np.asarray(points, dtype=float)
    return tuple(float(np.linalg.norm(b - a)) for a, b in ((tl, tr), (tr, br), (br, bl), (bl, tl)))


def test_classic_is_the_default_and_built_from_the_constants() -> None:
    assert synth.Conditions() == synth.CLASSIC
    classic = synth.CLASSIC
    assert classic.long_side == synth.IMAGE_LONG_SIDE and classic.aspects == synth.IMAGE_ASPECTS
    assert classic.frame_sizes == () and classic.jpeg_quality == synth.JPEG_QUALITY
    assert dict(classic.plate_width) == synth.PLATE_WIDTH_FRACTION and not classic.log_uniform_width
    assert classic.plate_count_weights == (1 - synth.TWO_PLATES_PROBABILITY, synth.TWO_PLATES_PROBABILITY)
    assert (classic.max_corner_jitter, classic.max_rotation_deg) == (synth.MAX_CORNER_JITTER, synth.MAX_ROTATION_DEG)
    assert (classic.projection, classic.photometry) == ("jitter", "classic")
    assert (classic.night_probability, classic.overexposure_probability, classic.occlusion_probability) == (0, 0, 0)
    for index in range(3):
        image, labelme = synth.render_sample(index, SEED)
        same_image, same_labelme = synth.render_sample(index, SEED, conditions=synth.CLASSIC)
        assert image.tobytes() == same_image.tobytes() and labelme == same_labelme


def test_road_frames_have_camera_sizes(road_samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    sizes = set()
    for image, labelme in road_samples:
        height, width = image.shape[:2]
        assert (labelme["imageWidth"], labelme["imageHeight"]) == (width, height)
        assert (width, height) in synth.ROAD.frame_sizes
        assert 640 <= width <= 1920 and 480 <= height <= 1080
        assert width * 3 == height * 4 or width * 9 == height * 16
        sizes.add((width, height))
    assert len(sizes) >= 5  # drawn from the whole set
    assert {s[0] * 3 == s[1] * 4 for s in sizes} == {True, False}  # both aspects


def test_road_plate_widths_span_the_range_skewed_small(road_samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    fractions = np.array([_width_fraction(p, lm) for _, lm in road_samples for p in _plates(lm)])
    assert fractions.min() >= 0.03 - 1e-3 and fractions.max() <= 0.45 + 1e-3
    assert fractions.min() < 0.05 and fractions.max() > 0.25
    assert np.mean(fractions < 0.15) > 0.45  # log-uniform: P(< 15 %) = ln 5 / ln 15 = 0.59
    assert np.mean(fractions < 0.15) > np.mean(fractions >= 0.3)


def test_road_frames_hold_up_to_four_plates(road_samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    counts = []
    for _, labelme in road_samples:
        plates = _plates(labelme)
        assert 1 <= len(plates) <= synth.ROAD.max_plates() == 4
        assert sorted(p["group_id"] for p in plates) == list(range(len(plates)))
        assert len(labelme["shapes"]) == 8 * len(plates)
        boxes = [np.asarray(p["points"]) for p in plates]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart_x = a[:, 0].max() < b[:, 0].min() or b[:, 0].max() < a[:, 0].min()
                apart_y = a[:, 1].max() < b[:, 1].min() or b[:, 1].max() < a[:, 1].min()
                assert apart_x or apart_y
        counts.append(len(plates))
    assert max(counts) >= 3 and min(counts) == 1


def test_road_labels_are_exact(road_samples: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
    """Every character polygon lies inside its plate's polygon, in reading order; plate corners run clockwise."""
    for _, labelme in road_samples:
        for plate in _plates(labelme):
            outline = np.asarray(plate["points"], dtype=np.float32)
            tl, tr, br, bl = outline
            assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]
            chars = _characters(labelme, plate["group_id"])
            assert len(chars) == spec.PLATE_LENGTH
            for char in chars:
                for x, y in char["points"]:
                    assert cv2.pointPolygonTest(outline, (float(x), float(y)), True) >= -0.02
            assert _reading_order(plate, chars) == chars


def test_road_samples_pass_the_labelme_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 written ROAD samples load and validate with alpr.data.labelme; the ground-truth reading of each file gives
    back exactly the plate texts that were drawn, in order."""
    from alpr.data.labelme import ground_truth_reading, load_labelme, validate_folder

    drawn: list[str] = []
    draw_text = synth.random_plate_text

    def recording(rng: np.random.Generator) -> str:
        drawn.append(draw_text(rng))
        return drawn[-1]

    monkeypatch.setattr(synth, "random_plate_text", recording)
    paths = synth.synthesize(tmp_path, 30, seed=ROAD_SEED, progress=False, conditions=synth.ROAD)
    report = validate_folder(tmp_path, progress=False)
    assert report.ok, report.format()
    assert report.checked == 30
    read: list[str] = []
    for json_path in paths:
        annotation = load_labelme(json_path)
        reading = ground_truth_reading(annotation.shapes)
        assert len(reading["plates"]) == len(annotation.plates()) >= 1
        read.extend(plate["text"] for plate in reading["plates"])
    assert read == drawn


def test_project_plate_foreshortens_with_yaw_and_pitch() -> None:
    """The pinhole projection: no pose gives the plate's own rectangle; yaw narrows it and makes its near vertical
    edge longer than its far one, pitch likewise with the horizontal edges; roll alone only rotates it."""
    size = spec.PLATE_SIZE_MM["two_line"]
    aspect = size[0] / size[1]

    def project(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
        return synth._project_plate(size, yaw, pitch, roll, 60.0, 400.0, 1280)

    flat = project()
    top, right, bottom, left = _edge_lengths(flat.tolist())
    assert np.ptp(flat[:, 0]) == pytest.approx(400.0)
    assert top == pytest.approx(bottom) and left == pytest.approx(right) and top / left == pytest.approx(aspect)
    for yaw in (20.0, -35.0):
        top, right, bottom, left = _edge_lengths(project(yaw=yaw).tolist())
        assert abs(right / left - 1.0) > 0.05  # one vertical edge is nearer the camera
        assert (top + bottom) / (left + right) < 0.95 * aspect  # narrower: foreshortened across
    _, right_a, _, left_a = _edge_lengths(project(yaw=20.0).tolist())
    _, right_b, _, left_b = _edge_lengths(project(yaw=-20.0).tolist())
    assert (right_a > left_a) != (right_b > left_b)  # the sign of the yaw picks the near side
    top, right, bottom, left = _edge_lengths(project(pitch=25.0).tolist())
    assert abs(top / bottom - 1.0) > 0.05 and left == pytest.approx(right)
    assert (top + bottom) / (left + right) > 1.02 * aspect  # shorter: foreshortened up-down
    rolled = project(roll=12.0)
    top, right, bottom, left = _edge_lengths(rolled.tolist())
    assert top == pytest.approx(bottom) and left == pytest.approx(right) and top / left == pytest.approx(aspect)
    angle = np.degrees(np.arctan2(*(rolled[1] - rolled[0])[::-1]))
    assert angle == pytest.approx(12.0)


def test_road_plates_are_foreshortened_only_by_yaw_and_pitch() -> None:
    """With yaw and pitch, many drawn plates have unequal opposite edges; without them (roll only) none has."""
    upright = dataclasses.replace(synth.ROAD, max_yaw_deg=0.0, max_pitch_deg=0.0)
    ratios = {}
    for name, conditions in (("posed", synth.ROAD), ("upright", upright)):
        ratios[name] = []
        for index in range(12):
            _, labelme = synth.render_sample(index, ROAD_SEED, conditions=conditions)
            for plate in _plates(labelme):
                top, right, bottom, left = _edge_lengths(plate["points"])
                if min(top, left) > 15:  # 2-decimal rounding is negligible on plates this large
                    ratios[name].append(max(abs(right / left - 1.0), abs(top / bottom - 1.0)))
    assert ratios["posed"] and ratios["upright"]
    assert max(ratios["upright"]) < 0.01
    assert np.mean(np.array(ratios["posed"]) > 0.02) > 0.3


def test_road_samples_are_deterministic(tmp_path: Path) -> None:
    image_a, labelme_a = synth.render_sample(4, ROAD_SEED, conditions=synth.ROAD)
    image_b, labelme_b = synth.render_sample(4, ROAD_SEED, conditions=synth.ROAD)
    assert image_a.tobytes() == image_b.tobytes() and json.dumps(labelme_a) == json.dumps(labelme_b)
    first = synth.synthesize(tmp_path / "a", 3, seed=2, progress=False, conditions=synth.ROAD)
    second = synth.synthesize(tmp_path / "b", 2, seed=2, progress=False, conditions=synth.ROAD)
    for json_path in second:
        twin = tmp_path / "a" / json_path.name
        assert json_path.read_bytes() == twin.read_bytes()
        assert json_path.with_suffix(".jpg").read_bytes() == twin.with_suffix(".jpg").read_bytes()
    assert len(first) == 3


def test_jpeg_quality_comes_from_the_conditions(tmp_path: Path) -> None:
    low = dataclasses.replace(synth.CLASSIC, jpeg_quality=(10, 10))
    high = dataclasses.replace(synth.CLASSIC, jpeg_quality=(95, 95))
    (low_json,) = synth.synthesize(tmp_path / "low", 1, seed=1, progress=False, conditions=low)
    (high_json,) = synth.synthesize(tmp_path / "high", 1, seed=1, progress=False, conditions=high)
    assert low_json.read_bytes() == high_json.read_bytes()  # the quality is drawn apart from the picture
    assert low_json.with_suffix(".jpg").stat().st_size < 0.5 * high_json.with_suffix(".jpg").stat().st_size


def _ink_spread(image: np.ndarray, labelme: dict[str, Any], plate: dict[str, Any]) -> float:
    """Grey-level spread (90th - 10th percentile) inside a plate's character boxes: ink against plate."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    inside = np.zeros(grey.shape, np.uint8)
    for char in _characters(labelme, plate["group_id"]):
        cv2.fillPoly(inside, [np.round(np.asarray(char["points"])).astype(np.int32)], 1)
    values = grey[inside > 0]
    return float(np.percentile(values, 90) - np.percentile(values, 10))


def test_night_and_overexposed_frames_keep_plates_legible() -> None:
    """Night frames are dark and over-exposed ones washed out and clipped, but the characters of plates of at least
    10 % of the frame width stay well apart from their plate."""
    night = dataclasses.replace(synth.ROAD, night_probability=1.0, overexposure_probability=0.0)
    over = dataclasses.replace(synth.ROAD, night_probability=0.0, overexposure_probability=1.0)
    spreads = []
    night_means, over_means, over_clipped = [], [], []
    for index in range(10):
        for conditions, means in ((night, night_means), (over, over_means)):
            image, labelme = synth.render_sample(index, ROAD_SEED, conditions=conditions)
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            means.append(float(grey.mean()))
            if conditions is over:
                over_clipped.append(float((grey >= 250).mean()))
            spreads += [_ink_spread(image, labelme, p) for p in _plates(labelme) if _width_fraction(p, labelme) >= 0.1]
    assert max(night_means) < 100 and np.median(over_means) > 150
    assert np.median(over_clipped) > 0.02
    assert spreads and min(spreads) > 25


def _one_line_plate(width: float, origin: tuple[float, float]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A fronto-parallel one-line plate quad of ``width`` px at ``origin`` and its 7 character boxes."""
    height = width / 4.7
    x0, y0 = origin
    quad = np.array([[x0, y0], [x0 + width, y0], [x0 + width, y0 + height], [x0, y0 + height]], np.float64)
    char_w, top, bottom = width * 0.1, y0 + 0.12 * height, y0 + 0.88 * height
    chars = []
    for i in range(7):
        left = x0 + width * 0.05 + i * width * 0.13 + (0.05 * width if i >= 3 else 0.0)
        chars.append(np.array([[left, top], [left + char_w, top], [left + char_w, bottom], [left, bottom]]))
    return quad, chars


def test_occluders_hide_at_most_the_limit_of_any_character() -> None:
    """An occluder is drawn over the plate, never hiding more than the limit of any character's box (measured
    from the drawn pixels: the frame starts at -1e6, so a pixel's change gives the occluder's coverage)."""
    quad, chars = _one_line_plate(420.0, (90.0, 150.0))
    base = np.full((400, 640, 3), -1e6, np.float32)
    drawn, worst = 0, []
    for seed in range(40):
        image = base.copy()
        if not synth._occlude(np.random.default_rng(seed), image, quad, chars, 0.3):
            continue
        drawn += 1
        coverage = np.clip((image[..., 0] + 1e6) / 1e6, 0.0, 1.0)
        for box in chars:
            inside = np.zeros(coverage.shape, np.uint8)
            cv2.fillPoly(inside, [np.round(box).astype(np.int32)], 1)
            worst.append(float(coverage[inside > 0].mean()))
    assert drawn >= 30
    assert max(worst) <= 0.3 + 0.02
    assert max(worst) > 0.15  # the limit is approached: the check is not vacuous


def test_road_occlusion_keeps_every_character_labelled() -> None:
    always = dataclasses.replace(synth.ROAD, occlusion_probability=1.0)
    for index in range(6):
        image, labelme = synth.render_sample(index, ROAD_SEED, conditions=always)
        plates = _plates(labelme)
        assert len(labelme["shapes"]) == 8 * len(plates)
        for plate in plates:
            text = "".join(c["label"] for c in _characters(labelme, plate["group_id"]))
            assert spec.is_valid_text(text)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_yaw_deg": -1.0}, "max_yaw_deg"),
        ({"max_pitch_deg": 90.0}, "max_pitch_deg"),
        ({"max_roll_deg": float("nan")}, "max_roll_deg"),
        ({"fov_deg": (float("nan"), 90.0)}, "fov_deg"),
        ({"long_side": (800, 512)}, "long_side"),
        ({"aspects": ()}, "aspects"),
        ({"frame_sizes": ((640,),)}, "frame_sizes"),
        ({"plate_count_weights": (0.5, 0.4)}, "plate_count_weights"),
        ({"plate_count_weights": ()}, "plate_count_weights"),
        ({"plate_count_weights": 0.3}, "plate_count_weights"),
        ({"plate_width": {"one_line": (0.03, 0.45)}}, "plate_width"),
        ({"plate_width": {"one_line": (0.5, 0.2), "two_line": (0.1, 0.2)}}, "plate_width\\['one_line'\\]"),
        ({"plate_width": {"one_line": (0.0, 0.2), "two_line": (0.1, 0.2)}}, "plate_width\\['one_line'\\]"),
        ({"log_uniform_width": 1}, "log_uniform_width"),
        ({"projection": "fisheye"}, "projection"),
        ({"photometry": "film"}, "photometry"),
        ({"night_probability": 0.2}, "night_probability needs photometry='camera'"),
        ({"defocus_blur_probability": 0.1}, "defocus_blur_probability needs"),
        ({"photometry": "camera", "night_probability": 0.7, "overexposure_probability": 0.5}, "night_probability"),
        ({"gaussian_blur_probability": 0.9, "motion_blur_probability": 0.2}, "motion_blur_probability"),
        ({"occlusion_probability": 1.5}, "occlusion_probability"),
        ({"max_occluded_fraction": -0.1}, "max_occluded_fraction"),
        ({"motion_blur_px": (3, 15)}, "motion_blur_px"),
        ({"motion_blur_px": (3.5, 7)}, "motion_blur_px"),
        ({"jpeg_quality": (0, 95)}, "jpeg_quality"),
        ({"jpeg_quality": 80}, "jpeg_quality"),
        ({"night_gain": (0.5, 0.25)}, "night_gain"),
        ({"overexposure_haze": (0.1, 0.95)}, "overexposure_haze"),
    ],
)
def test_conditions_reject_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"Conditions.{field}"):
        synth.Conditions(**kwargs)


def test_conditions_normalise_sequences_and_render_sample_checks_the_type(tmp_path: Path) -> None:
    conditions = synth.Conditions(long_side=[600, 700], aspects=[[4, 3]], jpeg_quality=[50, 60])
    assert conditions.long_side == (600, 700) and conditions.aspects == ((4, 3),)
    assert conditions.jpeg_quality == (50, 60)
    assert dataclasses.replace(synth.ROAD) == synth.ROAD
    assert pickle.loads(pickle.dumps(synth.ROAD)) == synth.ROAD  # e.g. handed to worker processes
    with pytest.raises(TypeError):
        synth.ROAD.plate_width["one_line"] = (0.5, 0.6)  # type: ignore[index]  # the presets cannot change
    with pytest.raises(ValueError, match="conditions"):
        synth.render_sample(0, 0, conditions="road")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conditions"):
        synth.synthesize(tmp_path / "out", 1, progress=False, conditions=None)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_sources_frame_size_overrides_the_conditions() -> None:
    sources = synth.Sources(long_side=(1280, 1280), aspects=((16, 9),))
    image, labelme = synth.render_sample(0, ROAD_SEED, sources=sources, conditions=synth.ROAD)
    assert image.shape == (720, 1280, 3) and (labelme["imageWidth"], labelme["imageHeight"]) == (1280, 720)
