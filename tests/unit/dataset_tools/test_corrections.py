"""``python -m dataset_tools corrections``: corrected readings of the prediction log as labelme files, then
``register`` publishes them as the next annotation version (all or nothing).

Real parts only: synthetic images with their labelme ground truth (alpr.data.synth), the prediction log on SQLite
(and MariaDB) with the images in a folder, the project's labelme validation, and ``register`` with real git and DVC.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dvc.repo  # noqa: F401 - imported at collection, as test_dataset_tools_cli does (DVC binds its log handlers)
import pytest
from PIL import Image

from alpr import spec
from alpr.data import labelme
from alpr.data.synth import synthesize
from alpr.metadata import MetadataStore
from alpr.monitoring.store import CharRecord, CorrectionPlate, PlateRecord, PredictionLog, PredictionRecord
from dataset_tools.__main__ import main
from dataset_tools.corrections import (
    NEEDS_CHARACTER_BOXES,
    export_corrections,
    labelme_document,
    layout_of_box,
    parse_since,
)

SINCE = "2000-01-01"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ALPR_* setting of the developer leaks in; relative defaults land in tmp_path."""
    for var in ("ALPR_WORKSPACE", "ALPR_DB_URL", "ALPR_DATASET_REPO", "ALPR_DVC_REMOTE", "ALPR_CACHE_DIR",
                "ALPR_STORAGE_URI", "ALPR_DB_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[tuple[Path, labelme.LabelmeFile]]:
    """Six synthetic images with their validated labelme ground truth."""
    folder = tmp_path_factory.mktemp("synth")
    synthesize(folder, 6, seed=23, progress=False)
    report = labelme.validate_folder(folder, progress=False)
    assert report.ok, report.format()
    return [(lf.image_path, lf) for lf in report.files]


def _truth(lf: labelme.LabelmeFile) -> list[dict]:
    """The ground-truth plates of a labelme file, as a reading's plates (PLATE_SPEC "A reading")."""
    return labelme.ground_truth_reading(lf.shapes)["plates"]


def _plate(p: dict, *, text: str | None = None, drop_last: bool = False, score: float = 0.9) -> PlateRecord:
    chars = p["characters"][:-1] if drop_last else p["characters"]
    text = "".join(c["char"] for c in chars) if text is None else text
    return PlateRecord(
        text=text,
        valid=spec.is_valid_text(text),
        score=score,
        box=tuple(p["box"]),
        layout=p["layout"],
        characters=tuple(CharRecord(c["char"], tuple(c["box"]), 0.8) for c in chars),
    )


def _record(event: str, image: Path, lf: labelme.LabelmeFile, plates) -> PredictionRecord:
    data = image.read_bytes()
    return PredictionRecord(
        id=None,
        event_id=event,
        received_at=datetime.now(UTC),
        model_name="alpr",
        model_version="1",
        image_sha256=hashlib.sha256(data).hexdigest(),
        image_bytes=len(data),
        width=lf.width,
        height=lf.height,
        latency_ms=None,
        plates=tuple(plates),
    )


def _wrong(text: str) -> str:
    """``text`` with its last digit changed (same length)."""
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.fixture
def logged(db_url, tmp_path, synth):
    """A prediction log with five corrected readings (images A-E of :func:`synth`):

    - A: read with a wrong last digit on its first plate, corrected (same length) -> complete;
    - B: its first plate read with a character missing, corrected to the 7-character truth -> needs boxes; a
      false plate dropped;
    - C: nothing read, the plate added as missed -> needs boxes;
    - D: corrected, but its image was not sampled -> skipped;
    - E: its only plate marked false -> skipped (no plate left).
    Returns ``(log, ids by letter, truth by letter)``.
    """
    log = PredictionLog(db_url, str(tmp_path / "storage"))
    (a_img, a), (b_img, b), (c_img, c), (d_img, d), (e_img, e) = synth[:5]
    ta, tb, tc, td, te = (_truth(x) for x in (a, b, c, d, e))
    records = [
        _record("a/0", a_img, a, [_plate(ta[0], text=_wrong(ta[0]["text"])), *(_plate(p) for p in ta[1:])]),
        _record(
            "b/0",
            b_img,
            b,
            [_plate(tb[0], drop_last=True), _plate({**tb[0], "box": [0, 0, 5, 5], "characters": []}, text="")],
        ),
        _record("c/0", c_img, c, []),
        _record("d/0", d_img, d, [_plate(p) for p in td]),
        _record("e/0", e_img, e, [_plate(te[0])]),
    ]
    images = [a_img.read_bytes(), b_img.read_bytes(), c_img.read_bytes(), None, e_img.read_bytes()]
    ids = dict(zip("ABCDE", log.add_predictions(records, images), strict=True))
    log.add_correction(ids["A"], "ann", [
        CorrectionPlate(tuple(ta[0]["box"]), ta[0]["text"], "corrected"),
        *(CorrectionPlate(tuple(p["box"]), p["text"], "confirmed") for p in ta[1:]),
    ])  # fmt: skip
    log.add_correction(ids["B"], "ann", [
        CorrectionPlate(tuple(tb[0]["box"]), tb[0]["text"], "corrected"),
        CorrectionPlate((0, 0, 5, 5), "", "false"),
        *(CorrectionPlate(tuple(p["box"]), p["text"], "missed") for p in tb[1:]),
    ])  # fmt: skip
    log.add_correction(ids["C"], "bob", [CorrectionPlate(tuple(p["box"]), p["text"], "missed") for p in tc])
    log.add_correction(ids["D"], "bob", [CorrectionPlate(tuple(p["box"]), p["text"], "confirmed") for p in td])
    log.add_correction(ids["E"], "bob", [CorrectionPlate(tuple(te[0]["box"]), te[0]["text"], "false")])
    return log, ids, {"A": a, "B": b, "C": c}


def _names(report) -> dict[int, str]:
    return {f.prediction_id: f.json_path.name for f in report.files}


def test_export_writes_labelme_files_complete_where_the_reading_gives_character_boxes(logged, tmp_path):
    log, ids, truth = logged
    out = tmp_path / "out"
    report = export_corrections(log, parse_since(SINCE), out)
    names = _names(report)
    assert set(names) == {ids["A"], ids["B"], ids["C"]}
    assert dict(report.skipped) == {
        ids["D"]: "its image is not stored (not sampled, or removed after the retention period)",
        ids["E"]: "no plate left after the correction (a labelme file needs one)",
    }
    # A is complete: it passes the Record step's validation and reads as the ground truth
    a = labelme.load_labelme(out / names[ids["A"]])
    assert [p["text"] for p in labelme.ground_truth_reading(a.shapes)["plates"]] == [
        p["text"] for p in _truth(truth["A"])
    ]
    assert a.image_path.read_bytes() == truth["A"].image_path.read_bytes()
    # B and C are listed, written without character shapes, and otherwise well-formed
    listed = dict(line.split(": ", 1) for line in (out / NEEDS_CHARACTER_BOXES).read_text().splitlines())
    assert set(listed) == {names[ids["B"]], names[ids["C"]]}
    assert "read as" in listed[names[ids["B"]]] and "not read by the model" in listed[names[ids["C"]]]
    for pid in (ids["B"], ids["C"]):
        lf = labelme.load_labelme(out / names[pid], check_plates=False)
        assert all(spec.is_plate(s.label) for s in lf.shapes)
    b = json.loads((out / names[ids["B"]]).read_text())
    assert len(b["shapes"]) == len(_truth(truth["B"]))  # the false plate is dropped
    assert b["shapes"][0]["description"] == f"{_truth(truth['B'])[0]['text']} (corrected)"
    # the folder's validation fails exactly on the listed files
    folder = labelme.validate_folder(out, progress=False)
    assert {p.name for p in folder.bad_files()} == set(listed)
    assert {lf.path.name for lf in folder.files} == {names[ids["A"]]}


def test_corrections_then_register_is_all_or_nothing(logged, db_url, tmp_path, capsys, synth):
    log, ids, truth = logged
    out = tmp_path / "out"
    backend = ["--workspace", str(tmp_path / "ws"), "--db-url", db_url, "--no-progress"]
    # a base version to build on: the sixth synthetic image
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    image, lf = synth[5]
    shutil.copy2(image, base_dir / image.name)
    shutil.copy2(lf.path, base_dir / lf.path.name)
    assert main(["register", str(base_dir), "--name", "annotations-v1", *backend]) == 0
    capsys.readouterr()

    code = main(["corrections", "--since", SINCE, "--out", str(out), "--base", "annotations-v1",
                 "--storage-uri", str(tmp_path / "storage"), *backend])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "wrote 3 corrected image(s)" in printed and "1 file(s) from the base version" in printed
    assert (out / lf.path.name).is_file() and (out / image.name).is_file()

    # unfinished files: register refuses the whole folder and publishes nothing
    assert main(["register", str(out), "--name", "annotations-v2", *backend]) == 1
    assert "was not registered" in capsys.readouterr().err
    store = MetadataStore(db_url)
    assert store.get_annotation_version("annotations-v2") is None

    # finished "in labelme": the character shapes of the ground truth added to each listed file
    by_stem = {f"monitor-{hashlib.sha256(x.image_path.read_bytes()).hexdigest()[:16]}": x for x in truth.values()}
    for line in (out / NEEDS_CHARACTER_BOXES).read_text().splitlines():
        name = line.split(": ", 1)[0]
        doc = json.loads((out / name).read_text())
        raw = json.loads(by_stem[Path(name).stem].path.read_text())
        doc["shapes"] += [copy.deepcopy(s) for s in raw["shapes"] if spec.is_character(s["label"])]
        (out / name).write_text(json.dumps(doc))
    assert labelme.validate_folder(out, progress=False).ok
    assert main(["register", str(out), "--name", "annotations-v2", *backend]) == 0, capsys.readouterr().err
    version = store.get_annotation_version("annotations-v2")
    store.dispose()
    assert version["image_count"] == 4  # the base image and the three corrected ones


def test_the_output_folder_must_be_new_or_empty(tmp_path, db_url, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code = main(["corrections", "--since", SINCE, "--out", str(out), "--db-url", db_url,
                 "--workspace", str(tmp_path / "ws")])  # fmt: skip
    assert code == 1
    assert f"--out {out} is not empty" in capsys.readouterr().err
    assert main(["corrections", "--since", "yesterday", "--out", str(tmp_path / "o2")]) == 2
    assert "'yesterday' is not a date" in capsys.readouterr().err


def test_a_later_correction_of_the_same_image_wins(db_url, tmp_path, synth):
    image, lf = synth[0]
    truth = _truth(lf)
    log = PredictionLog(db_url, str(tmp_path / "storage"))
    first, second = log.add_predictions(
        [_record("x/0", image, lf, [_plate(p) for p in truth]), _record("y/0", image, lf, [_plate(p) for p in truth])],
        [image.read_bytes(), image.read_bytes()],
    )
    log.add_correction(first, "ann", [CorrectionPlate(tuple(p["box"]), p["text"], "confirmed") for p in truth])
    log.add_correction(second, "bob", [CorrectionPlate(tuple(p["box"]), p["text"], "confirmed") for p in truth])
    report = export_corrections(log, datetime.now(UTC) - timedelta(hours=1), tmp_path / "out")
    assert [f.prediction_id for f in report.files] == [second]
    assert report.skipped == [(first, f"superseded by the correction of reading {second} of the same image")]
    assert report.files[0].complete


def test_labelme_document_shapes():
    record = PredictionRecord(
        id=1, event_id="e/0", received_at=datetime.now(UTC), model_name="alpr", model_version="1",
        image_sha256="0" * 64, image_bytes=1, width=100, height=50, latency_ms=None,
        plates=(PlateRecord("1A", False, 0.9, (10, 10, 50, 20), "one_line",
                            (CharRecord("1", (12, 11, 20, 19), 0.9), CharRecord("A", (22, 11, 30, 19), 0.9))),),
    )  # fmt: skip
    from alpr.monitoring.store import Correction

    correction = Correction(7, 1, "ann", datetime.now(UTC), (
        CorrectionPlate((9, 9, 51, 21), "4B", "corrected"),
        CorrectionPlate((60, 5, 90, 45), "12A3456", "missed"),
        CorrectionPlate((0, 0, 3, 3), "", "false"),
    ))  # fmt: skip
    doc, reasons = labelme_document(record, correction, "x.jpg")
    assert (
        doc["imagePath"] == "x.jpg"
        and doc["imageData"] is None
        and (doc["imageWidth"], doc["imageHeight"])
        == (
            100,
            50,
        )
    )
    labels = [(s["label"], s["shape_type"], s["group_id"]) for s in doc["shapes"]]
    assert labels == [
        ("plate_one_line", "polygon", 1),  # the read plate's layout
        ("4", "rectangle", 1),
        ("B", "rectangle", 1),
        ("plate_two_line", "polygon", 2),  # a missed 30x40 box: nearer 2:1 than 4.7:1
    ]
    assert doc["shapes"][0]["points"] == [[9, 9], [51, 9], [51, 21], [9, 21]]
    assert doc["shapes"][1]["points"] == [[12, 11], [20, 19]]
    assert len(reasons) == 1 and "plate 2 '12A3456' (missed" in reasons[0]


def test_layout_of_box_and_since():
    assert layout_of_box((0, 0, 470, 100)) == "one_line"
    assert layout_of_box((0, 0, 200, 100)) == "two_line"
    assert layout_of_box((0, 0, 300, 100)) == "two_line" and layout_of_box((0, 0, 310, 100)) == "one_line"
    assert parse_since("2026-11-29") == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_since("2026-11-29T08:00+02:00").utcoffset() == timedelta(hours=2)


def test_an_image_of_another_size_than_read_is_skipped(db_url, tmp_path, synth):
    image, lf = synth[0]
    small = tmp_path / "small.png"
    Image.open(image).resize((64, 32)).save(small)
    log = PredictionLog(db_url, str(tmp_path / "storage"))
    record = _record("s/0", small, lf, [])  # claims the original's size
    (pid,) = log.add_predictions([record], [small.read_bytes()])
    log.add_correction(pid, "ann", [CorrectionPlate(tuple(_truth(lf)[0]["box"]), _truth(lf)[0]["text"], "missed")])
    report = export_corrections(log, parse_since(SINCE), tmp_path / "out")
    assert report.files == [] and "the stored image is (64, 32) pixels" in report.skipped[0][1]
