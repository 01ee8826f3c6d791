"""Tests of :mod:`alpr.model.report`: the Test step's HTML report and :func:`render_detections`."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alpr.model.report import AMBER, GREEN, RED, THUMBNAIL_MAX_SIDE, ReportEntry, render_detections, write_report

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
    thumbs = sorted((tmp_path / "r" / "images").glob("*.jpg"))
    assert len(thumbs) == 3
    for thumb in thumbs:
        with Image.open(thumb) as im:
            im.load()
            assert im.format == "JPEG"
            assert max(im.size) <= THUMBNAIL_MAX_SIDE
    with Image.open(next(t for t in thumbs if "bad" in t.name)) as im:
        assert im.size == (640, 480)  # 1600 x 1200 shrunk to a 640 long side
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
    assert len(list((tmp_path / "r" / "images").glob("*.jpg"))) == 1
    assert "bad" in next((tmp_path / "r" / "images").glob("*.jpg")).name  # the first mistake got it
    for name in ("good.png", "bad.jpg", "missed.png"):
        assert name in html
    assert "max_images = 1" in html
    with pytest.raises(ValueError):
        write_report(tmp_path / "r", entries, {}, title="t", max_images=-1)


def test_rewriting_removes_stale_thumbnails(tmp_path: Path, entries):
    write_report(tmp_path / "r", entries, {}, title="t")
    write_report(tmp_path / "r", entries[:1], {}, title="t")
    assert len(list((tmp_path / "r" / "images").glob("*.jpg"))) == 1


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
    assert len(list((tmp_path / "r" / "images").glob("*.jpg"))) == 2


def test_no_images(tmp_path: Path):
    index = write_report(tmp_path / "r", [], {}, title="empty")
    html = index.read_text(encoding="utf-8")
    assert "No images." in html and "No metrics." in html
    assert list((tmp_path / "r" / "images").iterdir()) == []


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
