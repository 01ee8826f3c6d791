"""Reading plates with a (tiny) trained model: the model directory, PlateReader and the predict CLI."""

import json

import cv2
import numpy as np
import pytest

from alpr import predict
from alpr.inference import METADATA_FILE, ModelError, PlateReader, fetch_model, resolve_model_uri
from alpr.spec import LAYOUTS


@pytest.fixture(scope="module")
def reader(tiny_model_dir):
    return PlateReader(tiny_model_dir)


def _check_reading(reading):
    assert set(reading) == {"plates"}
    scores = [p["score"] for p in reading["plates"]]
    assert scores == sorted(scores, reverse=True)
    for plate in reading["plates"]:
        assert set(plate) == {"text", "layout", "valid", "box", "score", "characters"}
        assert plate["layout"] in LAYOUTS and len(plate["box"]) == 4
        assert plate["valid"] == bool(plate["valid"])


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
        _check_reading(r)
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


def test_predict_cli_writes_one_object_per_image(tiny_model_dir, tiny_coco, tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    images = sorted((tiny_coco / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in images[1:]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out.json"
    assert predict.main(["--model", str(tiny_model_dir), str(images[0]), str(folder), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert sorted(result) == sorted(p.name for p in images)
    for reading in result.values():
        _check_reading(reading)


def test_predict_cli_errors(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    assert predict.main(["--model", str(tiny_model_dir), str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert predict.main(["--model", str(tmp_path / "no-model"), str(tiny_model_dir / "model.json")]) != 0


def test_served_checkpoint_is_weights_only(tiny_model_dir):
    import torch

    ckpt = torch.load(str(tiny_model_dir / "model.pth"), map_location="cpu", weights_only=True)
    assert set(ckpt) == {"meta", "state_dict"} and ckpt["meta"]["dataset_meta"]["classes"][0] == "0"
