"""Reading plates with a (tiny) trained model: the model directory and PlateReader (the predict command line is
tested in tests/unit/serving/test_predict.py)."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from readings import check_reading

from alpr import spec
from alpr.model.inference import METADATA_FILE, ModelError, PlateReader, fetch_model, resolve_model_uri


@pytest.fixture(scope="module")
def reader(tiny_model_dir):
    return PlateReader(tiny_model_dir)


def test_model_dir_has_metadata(tiny_model_dir):
    meta = json.loads((tiny_model_dir / METADATA_FILE).read_text())
    assert meta["classes"][-2:] == ["plate_one_line", "plate_two_line"] and len(meta["classes"]) == 17
    assert "plate_score_thr" in meta["thresholds"]


def test_read_arrays_of_any_size(reader, tiny_coco):
    img = cv2.imread(str(next((tiny_coco / "images").glob("*.jpg"))))
    blank = np.full((720, 1280, 3), 127, np.uint8)
    readings = reader.read([img, blank])
    assert len(readings) == 2
    for r in readings:
        check_reading(r)
    h, w = img.shape[:2]
    for plate in readings[0]["plates"]:
        x1, y1, x2, y2 = plate["box"]
        assert -1 <= x1 <= x2 <= w + 1 and -1 <= y1 <= y2 <= h + 1
    assert reader.read([]) == []


def test_read_files_names_an_undecodable_file(reader, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        reader.read_files([bad])


def test_model_errors_name_the_path(tmp_path):
    with pytest.raises(ModelError, match="model.pth missing"):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.py").write_text("")
        fetch_model(str(tmp_path / "m"), tmp_path / "cache")
    assert resolve_model_uri("/some/dir") == "/some/dir"


def test_latest_without_a_selected_model(tmp_path):
    with pytest.raises(ModelError, match="no selected model"):
        resolve_model_uri("latest", db_url=f"sqlite:///{tmp_path / 'm.db'}")


def test_served_checkpoint_is_weights_only(tiny_model_dir):
    import torch

    ckpt = torch.load(str(tiny_model_dir / "model.pth"), map_location="cpu", weights_only=True)
    assert set(ckpt) == {"meta", "state_dict"} and ckpt["meta"]["dataset_meta"]["classes"][0] == "0"


# ------------------------------------------------------------------------------------------------ zoomed reading


def _dets(rows):
    """rows: (label, x1, y1, x2, y2, score) → (bboxes, labels, scores) arrays."""
    from alpr import spec

    b = np.array([r[1:5] for r in rows], float).reshape(-1, 4)
    return b, np.array([spec.class_id(r[0]) for r in rows], np.int64), np.array([r[5] for r in rows], float)


def test_zoom_regions_pick_small_confident_plates_with_margins():
    from alpr.model.inference import zoom_regions

    dets = _dets(
        [
            ("plate_one_line", 600, 400, 700, 420, 0.9),  # 100 px wide in 1280 → 25 px at 320: zoom
            ("plate_two_line", 100, 100, 700, 400, 0.9),  # 600 px → 150 px at 320: no zoom
            ("plate_one_line", 10, 10, 60, 20, 0.1),  # below the plate threshold
            ("1", 610, 402, 620, 418, 0.9),
        ]
    )
    regions = zoom_regions((720, 1280), dets, 320, 96, 0.3)
    assert len(regions) == 1
    plate, (x0, y0, x1, y1) = regions[0]
    assert plate == (600, 400, 700, 420)
    assert (x0, x1) == (550, 750)  # half the plate's width each side
    assert abs((y1 - y0) - 112.5) <= 1 and abs((y0 + y1) / 2 - 410) <= 1  # 9/16 of the 200 px crop width, centred
    assert zoom_regions((720, 1280), dets, 320, 0, 0.3) == []


def test_zoom_regions_clip_to_the_image():
    from alpr.model.inference import zoom_regions

    dets = _dets([("plate_one_line", 0, 0, 50, 12, 0.9)])
    ((_, (x0, y0, x1, y1)),) = zoom_regions((720, 1280), dets, 320, 96, 0.3)
    assert (x0, y0) == (0, 0) and x1 == 75 and y1 == 34  # 100 x 56 crop centred on (25, 6), cut at 0


def test_merge_zoomed_replaces_the_plates_characters_only():
    from alpr.model.inference import merge_zoomed
    from alpr.model.reading import read_arrays

    first = _dets(
        [
            ("plate_one_line", 600, 400, 700, 420, 0.9),
            ("8", 605, 402, 640, 418, 0.6),  # a blur of 2 glyphs
            ("5", 10, 10, 20, 30, 0.9),
        ]
    )  # outside the plate: kept
    # In the crop (top-left at 550, 354) the glyphs are found one by one.
    crop = _dets(
        [
            ("1", 57, 48, 67, 64, 0.9),
            ("2", 70, 48, 80, 64, 0.9),
            ("A", 83, 48, 93, 64, 0.9),
            ("3", 96, 48, 106, 64, 0.9),
            ("4", 109, 48, 119, 64, 0.9),
            ("5", 122, 48, 132, 64, 0.9),
            ("6", 135, 48, 145, 64, 0.9),
            ("7", 0, 0, 10, 10, 0.9),
        ]
    )  # the last one lies outside the plate
    boxes, labels, scores = merge_zoomed(first, (600, 400, 700, 420), (550, 354), crop)
    assert len(boxes) == 1 + 1 + 7
    reading = read_arrays(boxes, labels, scores)
    assert [p["text"] for p in reading["plates"]] == ["12A3456"]
    assert reading["plates"][0]["characters"][0]["box"] == [607.0, 402.0, 617.0, 418.0]


def test_zoomed_detection_runs_end_to_end(reader, tiny_coco):
    """The second pass on a real (tiny) model: same output structure, never fewer plates than one pass."""
    img = cv2.imread(str(sorted((tiny_coco / "images").glob("*.jpg"))[0]))
    one = reader.detect([img], zoom_below_px=0)[0]
    two = reader.detect([img], zoom_below_px=10_000)[0]
    assert two[0].shape[1] == 4 and len(two[0]) == len(two[1]) == len(two[2])
    plate_ids = {15, 16}
    assert sum(int(c) in plate_ids for c in two[1]) == sum(int(c) in plate_ids for c in one[1])


def test_zoom_choices_share_one_first_pass_and_equal_separate_calls(reader, tiny_coco, monkeypatch):
    """Evaluate's zoom sweep runs the first pass once; each choice's detections equal a separate detect call.

    The tiny model finds no plates, so its first pass gets each image's ground-truth plates added (label and score
    as a trained model would give them); the crops then go through the real detector.
    """
    plates = {}
    for ann in (tiny_coco / "annotations").glob("*.json"):
        for img in json.loads(ann.read_text())["images"]:
            plates[Path(img["file_name"]).name] = img.get("plates", [])
    paths = sorted((tiny_coco / "images").glob("*.jpg"))[:3]
    frames = {hashlib.sha256(cv2.imread(str(p)).tobytes()).hexdigest(): plates[p.name] for p in paths}
    calls = []
    run = reader._run

    def run_with_plates(images, size=0, model=None, **kwargs):
        calls.append(len(images))
        out = run(images, size, model, **kwargs)
        added = []
        for img, (b, found, sc) in zip(images, out):
            truth = frames.get(hashlib.sha256(img.tobytes()).hexdigest(), [])  # a crop has none
            boxes = np.array([t["box"] for t in truth], np.float64).reshape(-1, 4)
            labels = np.array([spec.class_id(spec.PLATE_ONE_LINE)] * len(truth), np.int64)
            added.append(
                (np.concatenate([b, boxes]), np.concatenate([found, labels]), np.concatenate([sc, np.ones(len(truth))]))
            )
        return added

    monkeypatch.setattr(reader, "_run", run_with_plates)
    choices = (0, 64, 10_000)
    together = reader.detect_files_zoom_choices(paths, choices, batch_size=8)
    assert calls == [len(paths), sum(len(v) for v in frames.values())]  # first pass once, every crop once
    for zoom in choices:
        alone = reader.detect_files(paths, zoom_below_px=zoom)
        assert len(alone) == len(together[zoom]) == len(paths)
        for a, b in zip(alone, together[zoom]):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="zoom_choices"):
        reader.detect_zoom_choices([], ())


def test_reader_pads_to_the_stride_not_to_a_square(reader):
    """A 16:9 frame is resized to the input's long side and padded to a multiple of 32 only (128 x 72 → 128 x 96
    for the tiny model's 128 px input), so inference does not pay for the square's padding."""
    frame = np.full((720, 1280, 3), 127, np.uint8)
    detector = reader.detector
    data = detector.pipeline(0)(dict(img=frame, img_id=0))
    assert tuple(data["inputs"].shape) == (3, 96, 128)
    detector.pad_to_stride = False
    detector._pipelines.clear()
    try:
        assert tuple(detector.pipeline(0)(dict(img=frame, img_id=0))["inputs"].shape) == (3, 128, 128)
    finally:
        detector.pad_to_stride = True
        detector._pipelines.clear()


# ------------------------------------------------------------------------------------------------ two stages


def test_two_stage_model_dir(tiny_two_stage_model_dir, tiny_model_dir):
    from alpr.model.inference import CHECKPOINT_FILE, CONFIG_FILE, PLATE_DETECTOR_DIR

    plate_dir = tiny_two_stage_model_dir / PLATE_DETECTOR_DIR
    assert (plate_dir / CONFIG_FILE).is_file() and (plate_dir / CHECKPOINT_FILE).is_file()
    assert json.loads((tiny_two_stage_model_dir / METADATA_FILE).read_text())["two_stage"] is True
    assert json.loads((tiny_model_dir / METADATA_FILE).read_text())["two_stage"] is False
    import torch

    slim = torch.load(str(plate_dir / CHECKPOINT_FILE), weights_only=True)
    assert slim["meta"]["dataset_meta"]["classes"] == list(spec.PLATE_LABELS)


def test_two_stage_reader_reads_every_plate_from_its_crop(tiny_two_stage_model_dir, tiny_coco, monkeypatch):
    reader = PlateReader(tiny_two_stage_model_dir, plate_score_thr=0.0)
    assert reader.two_stage and reader.plate_input_size == 256 and reader.input_size == 128
    calls = []
    run = reader._run

    def spy(images, size=0, detector=None, **kwargs):
        out = run(images, size, detector, **kwargs)
        calls.append((detector is reader.plate_detector, len(images), out))
        return out

    monkeypatch.setattr(reader, "_run", spy)
    img = cv2.imread(str(next((tiny_coco / "images").glob("*.jpg"))))
    (dets,) = reader.detect([img], zoom_below_px=0)
    (first_is_plates, n_frames, (plates,)), (crops_by_reader, n_crops, _) = calls
    assert first_is_plates and n_frames == 1 and not crops_by_reader
    plate_ids = {spec.class_id(label) for label in spec.PLATE_LABELS}
    assert set(plates[1].tolist()) <= plate_ids  # plate detector labels mapped into spec.CLASSES
    assert n_crops == int((plates[2] >= 0.0).sum())  # every plate, whatever zoom_below_px
    (reading,) = reader.read([img])
    check_reading(reading)
    assert set(dets[1][dets[1] >= len(spec.CHARACTERS)].tolist()) <= plate_ids


def test_two_stage_reader_without_plates_reads_nothing(tiny_two_stage_model_dir):
    reader = PlateReader(tiny_two_stage_model_dir, plate_score_thr=1.01)
    (reading,) = reader.read([np.full((480, 640, 3), 127, np.uint8)])
    assert reading == {"plates": []}
    assert reader.read([]) == []


def test_a_plate_detector_of_other_classes_is_refused(tiny_two_stage_model_dir, tiny_model_dir, tmp_path):
    import shutil

    from alpr.model.inference import CHECKPOINT_FILE, CONFIG_FILE, PLATE_DETECTOR_DIR

    bad = tmp_path / "model"
    shutil.copytree(tiny_two_stage_model_dir, bad)
    shutil.copyfile(tiny_model_dir / CHECKPOINT_FILE, bad / PLATE_DETECTOR_DIR / CHECKPOINT_FILE)  # 17 classes
    shutil.copyfile(tiny_model_dir / CONFIG_FILE, bad / PLATE_DETECTOR_DIR / CONFIG_FILE)
    with pytest.raises(ModelError, match="plate_detector.*predicts classes"):
        PlateReader(bad)


def test_rewriting_a_model_dir_without_plate_detector_removes_it(tiny_two_stage_model_dir, tiny_training, tmp_path):
    import shutil

    from alpr.model.inference import PLATE_DETECTOR_DIR, write_model_dir

    out = tmp_path / "model"
    shutil.copytree(tiny_two_stage_model_dir, out)
    last = [p for p in tiny_training.checkpoints if p.name.startswith("epoch_")][-1]
    write_model_dir(out, tiny_training.config_path, last, {})
    assert not (out / PLATE_DETECTOR_DIR).exists() and not PlateReader(out).two_stage


def test_overlapping_plates_are_one_plate_whatever_their_layout():
    from alpr.model.inference import suppress_overlapping_plates

    boxes = np.array(
        [
            [924, 413, 1219, 600],  # a plate
            [948, 427, 1177, 563],  # the same plate, a tighter box inside it (IoU 0.56, contained)
            [100, 100, 200, 140],  # another plate
            [105, 95, 215, 150],  # the same, IoU 0.66
            [400, 400, 500, 440],  # a third, apart
        ],
        float,
    )
    scores = np.array([0.5, 0.39, 0.3, 0.6, float("nan")])
    assert suppress_overlapping_plates(boxes, scores).tolist() == [3, 0, 4]
    assert suppress_overlapping_plates(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_a_reader_reads_crops_of_the_geometry_it_was_trained_on():
    from mmengine.config import Config

    from alpr.model.crops import READER_GEOMETRY, ZOOM_GEOMETRY
    from alpr.model.inference import trained_crop_geometry
    from alpr.model.training import CONFIG_DIR

    assert trained_crop_geometry(Config.fromfile(str(CONFIG_DIR / "rtmdet_tiny_reader_alpr.py"))) == READER_GEOMETRY
    assert trained_crop_geometry(Config.fromfile(str(CONFIG_DIR / "rtmdet_tiny_alpr.py"))) == ZOOM_GEOMETRY
    zoom_reader = Config.fromfile(str(CONFIG_DIR / "rtmdet_tiny_zoom_reader_alpr.py"))
    assert trained_crop_geometry(zoom_reader) == ZOOM_GEOMETRY
    assert trained_crop_geometry(None) == ZOOM_GEOMETRY


def test_crops_read_as_one_batch_match_crops_read_one_at_a_time(tiny_two_stage_model_dir, tiny_coco):
    reader = PlateReader(tiny_two_stage_model_dir)
    frames = [cv2.imread(str(p)) for p in sorted((tiny_coco / "images").glob("*.jpg"))[:3]]
    # Crops of different sizes and aspects, as the plates of a frame give them.
    crops = [frames[0][100:260, 50:400], frames[1][0:90, 0:160], frames[2][200:420, 300:500]]
    one_by_one = reader._run(crops)
    batched = reader._run(crops, batched=True)
    assert len(batched) == len(crops)
    for (b1, l1, s1), (b2, l2, s2), crop in zip(one_by_one, batched, crops, strict=True):
        keep1, keep2 = s1 >= 0.05, s2 >= 0.05  # the config's score floor can let a borderline box in or out
        assert keep1.sum() == keep2.sum() and (l1[keep1] == l2[keep2]).all()
        assert (
            np.abs(b1[keep1] - b2[keep2]).max(initial=0) <= 1.0 and np.abs(s1[keep1] - s2[keep2]).max(initial=0) <= 0.01
        )
        if len(b2):  # boxes in each crop's own pixels, not the padded batch's
            assert b2[:, 2].max() <= crop.shape[1] + 1 and b2[:, 3].max() <= crop.shape[0] + 1
