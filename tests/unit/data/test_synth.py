"""Tests of :mod:`alpr.data.synth`: determinism, the labelme contract of PLATE_SPEC.md and argument checks."""

from __future__ import annotations

import json
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
