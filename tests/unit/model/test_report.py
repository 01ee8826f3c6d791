"""Tests of :mod:`alpr.model.report`: the Test step's HTML report, the character alignment and confusion matrix,
and :func:`render_detections`."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alpr.model.report import (
    AMBER,
    BREAKDOWN_FILE,
    CONFUSION_CLASSES,
    CONFUSION_FILE,
    CROP_HEIGHT,
    CROP_MAX_WIDTH,
    GREEN,
    MISSING,
    RED,
    THUMBNAIL_MAX_SIDE,
    ConfusionMatrix,
    ReportEntry,
    align_texts,
    confusion_matrix,
    plate_character_pairs,
    render_detections,
    self_contained_html,
    write_report,
)
from alpr.spec import CHARACTERS

EVIL = "<script>alert('x')</script>"


def _plate(text, box, score=0.9, layout="one_line", chars=True):
    x1, y1, x2, y2 = box
    step = (x2 - x1) / max(len(text), 1)
    characters = (
        [{"char": c, "box": [x1 + i * step, y1, x1 + (i + 1) * step, y2], "score": 0.95} for i, c in enumerate(text)]
        if chars
        else []
    )
    return {
        "text": text,
        "layout": layout,
        "valid": bool(re.fullmatch(r"[0-9]{2}[A-E][0-9]{4}", text)),
        "box": list(box),
        "score": score,
        "characters": characters,
    }


def _thumbnails(report_dir: Path) -> list[Path]:
    """The report's thumbnails (plate crops are ``*_p<k>.jpg``)."""
    return sorted(p for p in (report_dir / "images").glob("*.jpg") if not re.search(r"_p\d+\.jpg$", p.name))


def _crops(report_dir: Path) -> list[Path]:
    return sorted((report_dir / "images").glob("*_p[0-9]*.jpg"))


def _image(path: Path, size=(800, 600), colour=(90, 90, 90)) -> Path:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = colour
    arr[200:260, 100:380] = 255  # a white "plate"
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def entries(tmp_path: Path) -> list[ReportEntry]:
    """Three images: read exactly, misread (with a hostile text), and a missed plate (no reading)."""
    box = [100, 200, 380, 260]
    return [
        ReportEntry(
            _image(tmp_path / "good.png"),
            truth=[{"box": box, "text": "12A3456", "layout": "one_line"}],
            reading={"plates": [_plate("12A3456", box, 0.97)]},
        ),
        ReportEntry(
            _image(tmp_path / "bad.jpg", size=(1600, 1200)),
            truth=[{"box": box, "text": "34B5678", "layout": "two_line"}],
            reading={"plates": [_plate(EVIL, box, 0.61)]},
        ),
        ReportEntry(
            _image(tmp_path / "missed.png", size=(320, 240)),
            truth=[{"box": [10, 10, 120, 40], "text": "56C7890", "layout": "one_line"}],
            reading={"plates": []},
        ),
    ]


def test_report_contents(tmp_path: Path, entries):
    metrics = {"eir": 1 / 3, "plate_precision": 0.5, "char_accuracy": float("nan"), "n_images": 3}
    lineage = {
        "dataset_version": "train-v3",
        "git_rev": "abc123",
        "model_uri": "gs://b/m/best.pth",
        "params": {"lr": 0.01},
    }
    index = write_report(tmp_path / "report", entries, metrics, title="Test run 7", lineage=lineage)
    assert index == tmp_path / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "<title>Test run 7</title>" in html
    for text in ("eir", "0.3333", "plate_precision", "0.5000", "char_accuracy", "NaN"):
        assert text in html
    for text in ("train-v3", "abc123", "gs://b/m/best.pth", "&#34;lr&#34;: 0.01"):
        assert text in html
    for text in ("12A3456", "34B5678", "56C7890", "good.png", "bad.jpg", "missed.png"):
        assert text in html
    # Summary: 3 images, 1 exact read of 3 plates.
    assert re.search(r"exact reads</th><td class=\"num\">1 / 3<", html)
    assert re.search(r"images read exactly</th><td class=\"num\">1<", html)


def test_report_escapes_texts(tmp_path: Path, entries):
    entries[0].truth[0]["layout"] = "<b>bold</b>"
    index = write_report(tmp_path / "r", entries, {EVIL: 1.0}, title=EVIL, lineage={"k": EVIL})
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<b>bold</b>" not in html
    assert "&lt;script&gt;" in html


def test_report_is_self_contained(tmp_path: Path, entries):
    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert srcs, "thumbnails are linked"
    for src in srcs:
        assert not src.startswith("/") and "://" not in src
        assert (tmp_path / "r" / src).is_file()


def test_thumbnails_exist_decode_and_are_bounded(tmp_path: Path, entries):
    write_report(tmp_path / "r", entries, {}, title="t")
    thumbs = _thumbnails(tmp_path / "r")
    assert len(thumbs) == 3
    for thumb in thumbs:
        with Image.open(thumb) as im:
            im.load()
            assert im.format == "JPEG"
            assert max(im.size) <= THUMBNAIL_MAX_SIDE
    with Image.open(next(t for t in thumbs if "bad" in t.name)) as im:
        side = THUMBNAIL_MAX_SIDE
        assert im.size == (side, side * 3 // 4)  # 1600 x 1200 shrunk to the thumbnail side
    with Image.open(next(t for t in thumbs if "missed" in t.name)) as im:
        assert im.size == (320, 240)  # small images are not enlarged


def test_mistakes_come_first(tmp_path: Path, entries):
    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    body = html[html.index('<table class="images">') :]
    positions = {name: body.index(name) for name in ("good.png", "bad.jpg", "missed.png")}
    assert positions["bad.jpg"] < positions["missed.png"] < positions["good.png"]
    rows = re.findall(r'<tr class="(correct|mistake)">', body)
    assert rows == ["mistake", "mistake", "correct"]


def test_max_images_limits_thumbnails_not_rows(tmp_path: Path, entries):
    html = write_report(tmp_path / "r", entries, {}, title="t", max_images=1).read_text(encoding="utf-8")
    assert len(_thumbnails(tmp_path / "r")) == 1 and len(_crops(tmp_path / "r")) == 1
    assert "bad" in _thumbnails(tmp_path / "r")[0].name  # the first mistake got it, and its plate's crop
    for name in ("good.png", "bad.jpg", "missed.png"):
        assert name in html
    assert "max_images = 1" in html
    with pytest.raises(ValueError):
        write_report(tmp_path / "r", entries, {}, title="t", max_images=-1)


def test_rewriting_removes_stale_thumbnails(tmp_path: Path, entries):
    write_report(tmp_path / "r", entries, {}, title="t")
    write_report(tmp_path / "r", entries[:1], {}, title="t")
    assert len(_thumbnails(tmp_path / "r")) == 1 and len(_crops(tmp_path / "r")) == 1


def test_empty_readings_and_unreadable_image(tmp_path: Path):
    img = _image(tmp_path / "a.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    entries = [
        ReportEntry(img, truth=[], reading={"plates": []}),  # nothing there, nothing read: exact
        ReportEntry(img, truth=[], reading={}),  # a reading without "plates"
        ReportEntry(broken, truth=[{"box": [1, 1, 5, 5], "text": "12A3456"}], reading={"plates": []}),
    ]
    html = write_report(tmp_path / "r", entries, {"eir": float("nan")}, title="t").read_text(encoding="utf-8")
    assert "no plate read" in html
    assert "image could not be drawn" in html and "broken.jpg" in html
    assert len(_thumbnails(tmp_path / "r")) == 2 and not _crops(tmp_path / "r")
    assert "1 image(s) could not be read" in html  # and are left out of the breakdown
    matrix = ConfusionMatrix.read(tmp_path / "r" / CONFUSION_FILE)
    assert matrix.total == 7 and matrix.confusions()[0] == ("1", MISSING, 1)  # the unread plate: all missing


def test_no_images(tmp_path: Path):
    index = write_report(tmp_path / "r", [], {}, title="empty")
    html = index.read_text(encoding="utf-8")
    assert "No images." in html and "No metrics." in html and "No ground-truth characters." in html
    assert list((tmp_path / "r" / "images").iterdir()) == []
    assert ConfusionMatrix.read(tmp_path / "r" / CONFUSION_FILE).total == 0
    assert (tmp_path / "r" / BREAKDOWN_FILE).is_file()


# -- render_detections -----------------------------------------------------------------------------------------
def _count(img: Image.Image, colour) -> int:
    arr = np.asarray(img).astype(int)
    return int((np.abs(arr - np.array(colour)).sum(axis=2) < 30).sum())


def test_render_detections_keeps_size_and_colours(tmp_path: Path):
    arr = np.full((300, 500, 3), 128, np.uint8)
    box = [50, 100, 300, 160]
    truth = [{"box": box, "text": "12A3456", "layout": "one_line"}]
    right = {"plates": [_plate("12A3456", box)]}
    wrong = {"plates": [_plate("12A3457", box)]}
    good = render_detections(arr, right, truth)
    bad = render_detections(arr, wrong, truth)
    unknown = render_detections(arr, right)
    for img in (good, bad, unknown):
        assert isinstance(img, Image.Image) and img.size == (500, 300) and img.mode == "RGB"
    assert _count(good, GREEN) > 100 and _count(good, RED) == 0
    assert _count(bad, RED) > 100 and _count(bad, GREEN) == 0
    assert _count(unknown, AMBER) > 100
    assert np.array_equal(np.asarray(render_detections(arr, {"plates": []})), arr)  # nothing drawn
    assert np.all(arr == 128)  # the input is not modified


def test_render_detections_inputs(tmp_path: Path):
    path = _image(tmp_path / "x.png", size=(64, 48))
    reading = {"plates": [_plate(EVIL + "\u00e9\u4e2d", [5, 5, 40, 20], score=float("nan"))]}
    assert render_detections(path, reading).size == (64, 48)
    assert render_detections(str(path), None).size == (64, 48)
    grey = np.zeros((48, 64), np.float32) + 0.5
    assert render_detections(grey, reading).size == (64, 48)
    rgba = np.zeros((48, 64, 4), np.uint8)
    assert render_detections(rgba, reading).size == (64, 48)
    odd = {"plates": [{"text": "1", "box": [math.nan, 0, 1, 1]}, {"box": None}, {"text": "2", "box": [1, 2]}]}
    assert render_detections(rgba, odd, truth=[{"box": None, "text": "x"}]).size == (64, 48)
    small = render_detections(np.zeros((1200, 1600, 3), np.uint8), reading, max_side=640)
    assert small.size == (640, 480)
    with pytest.raises(ValueError):
        render_detections(np.zeros((4, 4, 2), np.uint8), reading)
    with pytest.raises(FileNotFoundError):
        render_detections(tmp_path / "missing.png", reading)


def test_self_contained_html_inlines_thumbnails(tmp_path):
    import base64

    from alpr.model.report import ReportEntry, self_contained_html, write_report

    img = tmp_path / "car.jpg"
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(img)
    out = write_report(tmp_path / "r", [ReportEntry(img, [], {"plates": []})], {"eir": 1.0}, title="t")
    html = self_contained_html(out.parent)
    assert 'src="images/' not in html and 'href="images/' not in html
    data = html.split('src="data:image/jpeg;base64,')[1].split('"')[0]
    assert base64.b64decode(data)[:2] == b"\xff\xd8"  # a JPEG
    assert html.count("data:image/jpeg;base64,") == 1  # one picture, inlined once


# -- the plates: crops and marked characters --------------------------------------------------------------------
def test_each_plate_gets_a_small_crop_linked_once(tmp_path: Path, entries):
    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    crops = _crops(tmp_path / "r")
    assert len(crops) == 3  # one per ground-truth plate (the misread one and the one not found included)
    for crop in crops:
        with Image.open(crop) as im:
            im.load()
            assert im.format == "JPEG" and im.height <= CROP_HEIGHT and im.width <= CROP_MAX_WIDTH
        assert html.count(f'"images/{crop.name}"') == 1
    for thumb in _thumbnails(tmp_path / "r"):
        assert html.count(f'"images/{thumb.name}"') == 1  # no second link to the same picture


def test_differing_characters_are_marked_on_both_sides(tmp_path: Path):
    box, far = [100, 200, 380, 260], [500, 400, 700, 450]
    entry = ReportEntry(
        _image(tmp_path / "misread.png"),
        truth=[{"box": box, "text": "12A3456", "layout": "one_line"}],
        reading={"plates": [_plate("12B356", box), _plate("77E7777", far, score=0.4)]},
    )
    html = write_report(tmp_path / "r", [entry], {}, title="t").read_text(encoding="utf-8")
    plates = html[html.index('<table class="plates">') :]
    # truth 12A3456 vs read 12B356: A read as B, one 4 not read (shown as the missing symbol on the reading's side).
    assert '<span class="same">12</span><span class="diff">A</span>' in plates
    assert '<span class="same">12</span><span class="diff">B</span>' in plates
    assert f'<span class="gap">{MISSING}</span>' in plates
    assert "&#10007; misread" in plates
    assert "&#10007; no such plate" in plates and '<span class="diff">77E7777</span>' in plates  # read, no plate
    assert re.search(r"misread plates</th><td class=\"num\">1<", html)
    assert re.search(r"plates read where there is none</th><td class=\"num\">1<", html)


def test_marked_texts_are_escaped(tmp_path: Path, entries):
    entries[0].truth[0]["text"] = "<i>"
    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    body = html[html.index("<body>") :]
    assert "<i>" not in body and "&lt;i&gt;" in body
    assert "<script" not in body.lower()


# -- the confusion matrix and the breakdown on the page ---------------------------------------------------------
def test_report_has_the_confusion_matrix_and_writes_it(tmp_path: Path, entries):
    box = [100, 200, 380, 260]
    entries.append(
        ReportEntry(
            _image(tmp_path / "eight.png"),
            truth=[{"box": box, "text": "18B3456", "layout": "one_line"}],
            reading={"plates": [_plate("1BB3456", box)]},
        )
    )
    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    matrix = ConfusionMatrix.read(tmp_path / "r" / CONFUSION_FILE)
    assert matrix.classes == CONFUSION_CLASSES == (*CHARACTERS, MISSING)
    counts = matrix.as_array()
    index = {c: k for k, c in enumerate(matrix.classes)}
    assert counts[index["8"], index["B"]] == 1
    assert counts[index["1"], index["1"]] == 2  # good.png and eight.png
    assert counts[index["5"], index[MISSING]] >= 1  # 56C7890 not found: all its characters missing
    assert matrix.outside > 0  # the hostile reading's characters are outside the alphabet
    table = html[html.index('<table class="confusion">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == len(CONFUSION_CLASSES) + 1
    assert 'title="truth 8, read B: 1" style="background: rgba(210, 30, 30,' in table  # a red cell
    assert 'title="truth 1, read 1: 2" style="background: rgba(10, 143, 44,' in table  # a green one
    assert "8&rarr;B</span>&nbsp;1" in html  # listed among the most frequent confusions


def test_report_has_the_breakdown_tables(tmp_path: Path, entries):
    import json

    html = write_report(tmp_path / "r", entries, {}, title="t").read_text(encoding="utf-8")
    for group in ("layout", "width"):
        assert f'class="breakdown breakdown-{group}"' in html
    doc = json.loads((tmp_path / "r" / BREAKDOWN_FILE).read_text())
    assert doc  # Breakdown.to_json()
    layout = html[html.index('class="breakdown breakdown-layout"') :]
    layout = layout[: layout.index("</table>")]
    assert "one_line" in layout and "two_line" in layout


# -- align_texts, plate_character_pairs, confusion_matrix --------------------------------------------------------
def _unequal(pairs):
    return sorted(p for p in pairs if p[0] != p[1])


@pytest.mark.parametrize(
    ("truth", "read", "unequal"),
    [
        ("12A3456", "12A3456", []),
        ("12A3456", "12B3456", [("A", "B")]),
        ("12A3456", "12A456", [("3", MISSING)]),
        ("12A3456", "12A33456", [(MISSING, "3")]),
        ("12A3456", "", [(c, MISSING) for c in sorted("12A3456")]),
        ("", "12", [(MISSING, "1"), (MISSING, "2")]),
        ("", "", []),
    ],
)
def test_align_texts(truth, read, unequal):
    pairs = align_texts(truth, read)
    assert _unequal(pairs) == sorted(unequal)
    assert "".join(t for t, _ in pairs if t != MISSING) == truth
    assert "".join(r for _, r in pairs if r != MISSING) == read


def test_align_texts_edits_are_the_levenshtein_distance():
    from rapidfuzz.distance import Levenshtein

    rng = np.random.default_rng(0)
    for _ in range(300):
        truth = "".join(rng.choice(list("0128AB"), size=rng.integers(0, 9)))
        read = "".join(rng.choice(list("0128AB"), size=rng.integers(0, 9)))
        pairs = align_texts(truth, read)
        assert len(_unequal(pairs)) == Levenshtein.distance(truth, read)
        assert "".join(t for t, _ in pairs if t != MISSING) == truth
        assert "".join(r for _, r in pairs if r != MISSING) == read
        assert max(len(truth), len(read)) <= len(pairs) <= len(truth) + len(read)


def test_plate_character_pairs_follow_plate_matching():
    a, b, far = [0, 0, 100, 30], [200, 0, 300, 30], [500, 500, 600, 530]
    truth = [
        {"box": a, "text": "12A3456"},
        {"box": b, "text": "34B5678"},  # not found
        {"box": None, "text": "99E9999"},  # no usable box: never matched
    ]
    reading = {"plates": [_plate("12B3456", a, 0.9), _plate("11A1111", far, 0.8)]}  # the second matches nothing
    pairs = plate_character_pairs(truth, reading)
    assert len(pairs) == 21
    assert _unequal(pairs) == sorted([("A", "B")] + [(c, MISSING) for c in "34B567899E9999"])
    assert plate_character_pairs(truth, None) == [(c, MISSING) for c in "12A345634B567899E9999"]
    assert plate_character_pairs([], reading) == []


def test_confusion_matrix_counts_and_round_trip(tmp_path: Path):
    matrix = confusion_matrix([("8", "B"), ("8", "B"), ("1", "1"), ("A", MISSING), (MISSING, "7"), ("<", "1")])
    assert matrix.classes == CONFUSION_CLASSES
    counts = matrix.as_array()
    assert counts.shape == (16, 16) and counts.dtype == np.int64
    assert counts.sum() == matrix.total == 5 and matrix.outside == 1
    assert matrix.confusions() == [("8", "B", 2), ("A", MISSING, 1), (MISSING, "7", 1)]
    assert matrix.confusions(limit=1) == [("8", "B", 2)]
    assert ConfusionMatrix.from_json(matrix.to_json()) == matrix
    empty = confusion_matrix([])
    assert empty.total == 0 and empty.confusions() == [] and empty.outside == 0


def test_confusion_matrix_rejects_bad_input(tmp_path: Path):
    with pytest.raises(ValueError, match="repeat"):
        confusion_matrix([], classes=("1", "1"))
    with pytest.raises(ValueError, match="2 x 2"):
        ConfusionMatrix(("1", "2"), ((1, 2),))
    with pytest.raises(ValueError, match="non-negative"):
        ConfusionMatrix(("1",), ((-1,),))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        ConfusionMatrix.read(bad)
    bad.write_text('{"classes": ["1"], "matrix": 3}')
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*'matrix'"):
        ConfusionMatrix.read(bad)
    bad.write_text('{"classes": ["1", "2"], "matrix": [[0, 0]]}')
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*2 x 2"):
        ConfusionMatrix.read(bad)
    with pytest.raises(FileNotFoundError):
        ConfusionMatrix.read(tmp_path / "missing.json")


# -- size: each picture inlined once, a few hundred test frames well under 10 MB ---------------------------------
#: Synthetic 1280 x 720 frames in the size test, and the budget it checks: 10 MB for 200 frames (issue 14), pro rata.
SIZE_FRAMES = 16
SIZE_BUDGET_BYTES = 10_000_000 * SIZE_FRAMES // 200


def test_self_contained_report_of_synthetic_frames_fits_the_budget(tmp_path: Path):
    from alpr.data.labelme import ground_truth_reading, load_labelme
    from alpr.data.synth import Sources, synthesize

    sources = Sources(long_side=(1280, 1280), aspects=((16, 9),))
    entries = []
    for k, json_path in enumerate(
        synthesize(tmp_path / "frames", SIZE_FRAMES, seed=3, progress=False, sources=sources)
    ):
        lf = load_labelme(json_path)
        reading = ground_truth_reading(lf.shapes)  # the ground truth as the "reading"
        truth = [{"box": p["box"], "text": p["text"], "layout": p["layout"]} for p in reading["plates"]]
        if k % 4 == 0:  # a few misreadings
            text = reading["plates"][0]["text"]
            reading["plates"][0]["text"] = text[:3] + ("8" if text[3] != "8" else "0") + text[4:]
        if k == 1:  # a plate not found
            reading["plates"] = reading["plates"][1:]
        entries.append(ReportEntry(lf.image_path, truth=truth, reading=reading))
    with Image.open(entries[0].image_path) as im:
        assert im.size == (1280, 720)
    report_dir = tmp_path / "r"
    write_report(report_dir, entries, {"eir": 0.8}, title="size")
    html = self_contained_html(report_dir)
    assert len(html.encode("utf-8")) < SIZE_BUDGET_BYTES
    pictures = sorted((report_dir / "images").glob("*.jpg"))
    assert len(_thumbnails(report_dir)) == SIZE_FRAMES
    assert len(_crops(report_dir)) == sum(len(e.truth) for e in entries)
    assert html.count("data:image/jpeg;base64,") == len(pictures)
    assert 'src="images/' not in html and 'href="images/' not in html
    import base64

    for picture in pictures:
        assert html.count(base64.b64encode(picture.read_bytes()).decode("ascii")) == 1
