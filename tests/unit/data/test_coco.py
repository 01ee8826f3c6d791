"""Tests of alpr.data.coco: deterministic split, COCO structure, ground-truth plates, writing (real files, no mocks)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from alpr import spec
from alpr.data.coco import (
    build_splits,
    check_fractions,
    split_assignment,
    split_counts,
    split_of,
    to_coco,
    write_coco_dataset,
    write_json_atomic,
)
from alpr.data.labelme import AnnotationError, LabelmeFile, load_labelme

W, H = 200, 120


def rect(label, x1, y1, x2, y2):
    return {"label": label, "points": [[x1, y1], [x2, y2]], "shape_type": "rectangle", "group_id": None, "flags": {}}


def poly(label, *pts):
    return {"label": label, "points": [list(p) for p in pts], "shape_type": "polygon", "group_id": None, "flags": {}}


def one_line_plate(text: str, x: float, y: float, legacy: bool = False) -> list[dict]:
    """A one-line plate at (x, y): 7 characters of 10x16 px, 2 px apart, listed in a scrambled order."""
    shapes = [poly("l_board" if legacy else "plate_one_line", (x, y), (x + 84, y), (x + 84, y + 20), (x, y + 20))]
    chars = [rect(c, x + 2 + 12 * i, y + 2, x + 12 + 12 * i, y + 18) for i, c in enumerate(text)]
    return shapes + chars[::2] + chars[1::2]


def two_line_plate(text: str, x: float, y: float) -> list[dict]:
    """A two-line plate at (x, y): 3 characters above 4, listed bottom line first."""
    shapes = [rect("plate_two_line", x, y, x + 60, y + 44)]
    top = [rect(c, x + 12 + 12 * i, y + 2, x + 22 + 12 * i, y + 20) for i, c in enumerate(text[:3])]
    bottom = [rect(c, x + 4 + 13 * i, y + 24, x + 15 + 13 * i, y + 42) for i, c in enumerate(text[3:])]
    return shapes + bottom[::-1] + top


def make_file(
    folder: Path, stem: str, shapes: list[dict], w: int = W, h: int = H, *, check_plates: bool = True
) -> LabelmeFile:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (10, 20, 30)).save(folder / f"{stem}.png")
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"{stem}.png",
        "imageData": None,
        "imageHeight": h,
        "imageWidth": w,
    }
    (folder / f"{stem}.json").write_text(json.dumps(doc))
    return load_labelme(folder / f"{stem}.json", check_plates=check_plates)


@pytest.fixture
def files(tmp_path) -> list[LabelmeFile]:
    src = tmp_path / "src"
    out = [
        make_file(
            src,
            "both",
            one_line_plate("12A3456", 10, 10) + two_line_plate("78B9012", 120, 50) + [rect("r_s_n", 120, 50, 150, 70)],
        ),
        # A plate with one character: the import refuses it (alpr.data.labelme); the converter must still cope.
        make_file(
            src,
            "triangle",
            [poly("plate_one_line", (0, 0), (100, 0), (0, 60)), rect("3", 5, 5, 15, 25)],
            check_plates=False,
        ),
    ]
    out += [make_file(src, f"car_{i:02d}", one_line_plate(f"{i:02d}C{i:04d}", 20, 30)) for i in range(10)]
    return out


# ---------------------------------------------------------------------------------------------------- split


def test_split_of_is_deterministic_and_seeded():
    names = [f"img_{i:04d}.jpg" for i in range(200)]
    a = [split_of(n, 7, (0.8, 0.1, 0.1)) for n in names]
    assert a == [split_of(n, 7, (0.8, 0.1, 0.1)) for n in names]
    assert set(a) <= set(spec.SPLITS)
    assert a != [split_of(n, 8, (0.8, 0.1, 0.1)) for n in names]


def test_split_is_stable_when_files_are_added():
    first = {n: split_of(n, 3, (0.7, 0.2, 0.1)) for n in (f"a{i}.png" for i in range(300))}
    more = {n: split_of(n, 3, (0.7, 0.2, 0.1)) for n in [f"b{i}.png" for i in range(300)] + list(first)}
    assert all(more[n] == s for n, s in first.items())


def test_split_fractions_are_respected_roughly():
    counts = Counter(split_of(f"plate_{i}.jpg", 42, (0.7, 0.2, 0.1)) for i in range(1000))
    assert abs(counts["train"] - 700) < 50 and abs(counts["val"] - 200) < 40 and abs(counts["test"] - 100) < 30


def test_zero_fractions_get_no_images():
    names = [f"n{i}" for i in range(500)]
    assert {split_of(n, 1, (1.0, 0.0, 0.0)) for n in names} == {"train"}
    assert {split_of(n, 1, (0.5, 0.5, 0.0)) for n in names} == {"train", "val"}
    assert {split_of(n, 1, (0.5, 0.0, 0.5)) for n in names} == {"train", "test"}
    # Sums off by float rounding (within 1e-6) are accepted.
    assert {split_of(n, 1, (0.1 + 0.2, 0.7, 0.0)) for n in names} <= {"train", "val"}


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.1, 0.2), r"sum to 1, got \(0.8, 0.1, 0.2\)"),
        ((0.9, 0.2, -0.1), r"fraction test=-0.1 is negative"),
        ((0.0, 0.5, 0.5), r"fraction train=0.0 must be > 0"),
        ((0.5, 0.5), r"3 numbers .* got \(0.5, 0.5\)"),
        ((float("nan"), 0.5, 0.5), r"fraction train=nan is not a finite number"),
        ((0.8, "0.1", 0.1), r"fraction val='0.1' is not a finite number"),
        (0.8, r"must be \(train, val, test\), got 0.8"),
    ],
)
def test_bad_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        check_fractions(fractions)
    with pytest.raises(ValueError, match=message):
        split_of("x.jpg", 0, fractions)


def test_split_assignment_and_counts(files):
    fr = (0.5, 0.25, 0.25)
    assign = split_assignment(files, 11, fr)
    assert list(assign) == [lf.image_path.name for lf in files]
    assert all(assign[n] == split_of(n, 11, fr) for n in assign)
    counts = split_counts(files, 11, fr)
    assert sum(c["images"] for c in counts.values()) == len(files)
    total = Counter()
    for lf in files:
        total.update(lf.class_counts())
    for cls in spec.CLASSES:
        assert sum(c["classes"][cls] for c in counts.values()) == total[cls]
    assert list(counts["train"]["classes"]) == list(spec.CLASSES)
    assert sum(c["instances"] for c in counts.values()) == sum(total.values())


# ---------------------------------------------------------------------------------------------------- to_coco


def test_to_coco_structure(files):
    coco = to_coco(files[:2], image_prefix="imgs/")
    assert set(coco) == {"info", "licenses", "categories", "images", "annotations"}
    assert coco["licenses"] == []
    assert [c["name"] for c in coco["categories"]] == list(spec.CLASSES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, 18))
    assert coco["categories"][0] == {"id": 1, "name": "0", "supercategory": "character"}
    assert coco["categories"][16] == {"id": 17, "name": "plate_two_line", "supercategory": "plate"}

    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        (1, "imgs/both.png", W, H),
        (2, "imgs/triangle.png", W, H),
    ]
    anns = coco["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    assert len(anns) == 1 + 7 + 1 + 7 + 2  # both (r_s_n dropped) + triangle
    assert Counter(a["image_id"] for a in anns) == {1: 16, 2: 2}
    assert all(a["iscrowd"] == 0 for a in anns)

    plate = anns[0]  # the one-line polygon plate of "both"
    assert plate["category_id"] == spec.CLASSES.index("plate_one_line") + 1
    assert plate["bbox"] == [10.0, 10.0, 84.0, 20.0]
    assert plate["area"] == pytest.approx(84 * 20)
    assert plate["segmentation"] == [[10.0, 10.0, 94.0, 10.0, 94.0, 30.0, 10.0, 30.0]]
    two = next(a for a in anns if a["category_id"] == 17)  # a rectangle: its 4 corners
    assert two["bbox"] == [120.0, 50.0, 60.0, 44.0] and two["area"] == pytest.approx(60 * 44)
    assert two["segmentation"] == [[120.0, 50.0, 180.0, 50.0, 180.0, 94.0, 120.0, 94.0]]
    tri = anns[-2]
    assert tri["bbox"] == [0.0, 0.0, 100.0, 60.0]
    assert tri["area"] == pytest.approx(3000.0)  # shoelace, not the bbox area
    char = anns[-1]
    assert char["category_id"] == spec.CLASSES.index("3") + 1
    assert char["bbox"] == [5.0, 5.0, 10.0, 20.0] and char["area"] == pytest.approx(200.0)
    json.dumps(coco, allow_nan=False)


def test_to_cocoground_truth_plates(files):
    images = to_coco(files[:2])["images"]
    assert images[0]["plates"] == [
        {
            "box": [10.0, 10.0, 94.0, 30.0],
            "text": "12A3456",
            "layout": "one_line",
            "points": [[10.0, 10.0], [94.0, 10.0], [94.0, 30.0], [10.0, 30.0]],
        },
        {  # a rectangle shape: its 4 corners, clockwise from the top-left
            "box": [120.0, 50.0, 180.0, 94.0],
            "text": "78B9012",
            "layout": "two_line",
            "points": [[120.0, 50.0], [180.0, 50.0], [180.0, 94.0], [120.0, 94.0]],
        },
    ]
    assert images[1]["plates"] == [
        {"box": [0.0, 0.0, 100.0, 60.0], "text": "3", "layout": "one_line", "points": [[0, 0], [100, 0], [0, 60]]}
    ]


def test_ground_truth_plate_outlines_follow_the_file_order_and_are_rounded(tmp_path):
    # The two-line plate is listed first; a polygon outline with 5 points and long decimals.
    outline = [(10.123456, 10.0), (93.987654, 11.5), (95.0, 20.0), (94.0, 31.0), (9.5, 30.25)]
    shapes = two_line_plate("78B9012", 120, 50)
    shapes += [poly("plate_one_line", *outline)] + one_line_plate("12A3456", 10, 10)[1:]
    plates = to_coco([make_file(tmp_path, "order", shapes)])["images"][0]["plates"]
    assert [p["text"] for p in plates] == ["78B9012", "12A3456"]
    assert plates[1]["points"] == [[10.12, 10.0], [93.99, 11.5], [95.0, 20.0], [94.0, 31.0], [9.5, 30.25]]
    json.dumps(plates, allow_nan=False)


def test_legacy_labels_reach_coco_normalised(tmp_path):
    lf = make_file(tmp_path, "legacy", one_line_plate("34e5678", 5, 5, legacy=True))
    coco = to_coco([lf])
    assert coco["images"][0]["plates"][0]["text"] == "34E5678"
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == sorted("34E5678") + ["plate_one_line"]


def test_to_coco_empty():
    coco = to_coco([])
    assert coco["images"] == [] and coco["annotations"] == [] and len(coco["categories"]) == 17


def test_duplicate_image_names_are_refused(tmp_path, files):
    clash = make_file(tmp_path / "other", "both", one_line_plate("11A1111", 5, 5))
    with pytest.raises(AnnotationError, match="image file name 'both.png' is also used by"):
        to_coco(files + [clash])
    with pytest.raises(AnnotationError) as ei:
        write_coco_dataset(files + [clash], tmp_path / "out", 0, (0.8, 0.1, 0.1))
    assert ei.value.path == clash.path
    assert not (tmp_path / "out").exists()


def test_build_splits_partitions_images(files):
    fr = (0.5, 0.25, 0.25)
    splits = build_splits(files, 5, fr)
    assert list(splits) == ["train", "val", "test"] == list(spec.SPLITS)
    assign = split_assignment(files, 5, fr)
    for name, coco in splits.items():
        got = [im["file_name"].removeprefix("images/") for im in coco["images"]]
        assert got == [n for n, s in assign.items() if s == name]
        assert [im["id"] for im in coco["images"]] == list(range(1, len(got) + 1))
        ids = {im["id"] for im in coco["images"]}
        assert all(a["image_id"] in ids for a in coco["annotations"])
    assert sum(len(c["images"]) for c in splits.values()) == len(files)


# ---------------------------------------------------------------------------------------------------- writing


def test_write_coco_dataset_loads_in_pycocotools(tmp_path, files):
    from pycocotools.coco import COCO

    out = tmp_path / "dataset"
    fr = (0.6, 0.2, 0.2)
    summary = write_coco_dataset(files, out, 9, fr)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["images"] == len(files)
    assert summary["fractions"] == [0.6, 0.2, 0.2] and summary["seed"] == 9
    assert summary["dropped"] == {"r_s_n": 1}
    assert summary["classes"]["plate_one_line"] == 12 and summary["classes"]["plate_two_line"] == 1
    assert sum(s["images"] for s in summary["splits"].values()) == len(files)
    assert sum(s["plates"] for s in summary["splits"].values()) == 13
    assert sum(s["invalid_plates"] for s in summary["splits"].values()) == 1  # the triangle's "3"
    assert sum(s["characters_outside_plates"] for s in summary["splits"].values()) == 0
    assert summary["images_linked"] + summary["images_copied"] == len(files)

    assign = split_assignment(files, 9, fr)
    for name in spec.SPLITS:
        path = out / "annotations" / f"{name}.json"
        assert summary["annotation_files"][name] == f"annotations/{name}.json"
        coco = COCO(str(path))
        assert sorted(coco.getCatIds()) == list(range(1, 18))
        assert len(coco.getImgIds()) == summary["splits"][name]["images"] == sum(s == name for s in assign.values())
        assert len(coco.getAnnIds()) == summary["splits"][name]["instances"]
        for img in coco.loadImgs(coco.getImgIds()):
            assert (out / img["file_name"]).is_file()
            with Image.open(out / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"])
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(lf.image_path.name for lf in files)
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["test.json", "train.json", "val.json"]


def test_images_are_hard_linked_on_one_filesystem_else_copied(tmp_path, files):
    linked = write_coco_dataset(files, tmp_path / "a", 0, (0.8, 0.1, 0.1))
    copied = write_coco_dataset(files, tmp_path / "b", 0, (0.8, 0.1, 0.1), link_images=False)
    assert linked["images_linked"] == len(files)  # tmp_path is one filesystem
    assert copied["images_copied"] == len(files)
    src = files[0].image_path
    assert os.path.samefile(src, tmp_path / "a" / "images" / src.name)
    assert not os.path.samefile(src, tmp_path / "b" / "images" / src.name)
    assert (tmp_path / "b" / "images" / src.name).read_bytes() == src.read_bytes()


def test_rewriting_is_idempotent_and_never_writes_through_links(tmp_path, files):
    out = tmp_path / "ds"
    first = write_coco_dataset(files, out, 1, (0.8, 0.1, 0.1))
    before = {p.name: p.read_bytes() for p in (out / "annotations").iterdir()}
    again = write_coco_dataset(files, out, 1, (0.8, 0.1, 0.1), link_images=False)
    assert again["images_present"] == len(files)  # already the same files: left alone
    assert {p.name: p.read_bytes() for p in (out / "annotations").iterdir()} == before
    assert first["splits"] == again["splits"]
    # A destination that is a hard link to some *other* image is replaced, not overwritten in place.
    victim = tmp_path / "victim.png"
    Image.new("RGB", (3, 3)).save(victim)
    victim_bytes = victim.read_bytes()
    dst = out / "images" / files[0].image_path.name
    dst.unlink()
    os.link(victim, dst)
    write_coco_dataset(files, out, 1, (0.8, 0.1, 0.1), link_images=False)
    assert victim.read_bytes() == victim_bytes
    assert dst.read_bytes() == files[0].image_path.read_bytes()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_stale_files_in_the_output_are_refused(tmp_path, files):
    out = tmp_path / "ds"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="old.png"):
        write_coco_dataset(files, out, 0, (0.8, 0.1, 0.1))
    assert not (out / "annotations").exists()


def test_annotations_only(tmp_path, files):
    out = tmp_path / "ds"
    summary = write_coco_dataset(files, out, 0, (0.8, 0.1, 0.1), copy_images=False)
    assert not (out / "images").exists()
    assert summary["images_linked"] == summary["images_copied"] == 0
    assert (out / "annotations" / "train.json").is_file()


def test_bad_fractions_write_nothing(tmp_path, files):
    with pytest.raises(ValueError, match="sum to 1"):
        write_coco_dataset(files, tmp_path / "ds", 0, (0.5, 0.1, 0.1))
    assert not (tmp_path / "ds").exists()


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json_atomic(path, {"a": [1, 2.5, "é"]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2.5, "é"]}
    # A failure half-way through serialising leaves the old file intact and no temporary file behind.
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": [1] * 10_000 + [object()]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2.5, "é"]}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # strict JSON
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2.5, "é"]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
