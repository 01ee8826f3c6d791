"""``alpr export-onnx``: an older model directory gets its ONNX export in place; bad directories are named."""

import shutil

from alpr.serving import export


def test_export_writes_the_networks_and_the_record(tiny_two_stage_model_dir, tmp_path, capsys):
    from alpr.model.inference import PlateReader

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_two_stage_model_dir, model_dir)
    assert not (model_dir / "model.onnx").exists()
    assert export.main([str(model_dir)]) == 0
    assert "model.onnx, plate_detector/model.onnx (recorded in model.json)" in capsys.readouterr().out
    assert (model_dir / "model.onnx").is_file() and (model_dir / "plate_detector" / "model.onnx").is_file()
    reader = PlateReader(model_dir)
    assert reader.backend == "onnx" and reader.two_stage


def test_a_missing_or_incomplete_directory_exits_1_naming_it(tmp_path, capsys):
    assert export.main([str(tmp_path / "nope")]) == 1
    assert f"model {tmp_path / 'nope'}: not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert export.main([str(tmp_path / "empty")]) == 1
    assert "no model.json" in capsys.readouterr().err
