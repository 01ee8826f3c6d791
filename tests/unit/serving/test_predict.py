"""The predict command line (alpr.serving.predict): its flags, the expansion of folders into images, the exit codes
of bad input and a missing model, and an end-to-end read with the tiny trained model (tests/conftest.py)."""

import json
from pathlib import Path

import pytest
from readings import check_reading

from alpr.serving import predict


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty workspace of its own (``ALPR_WORKSPACE``; no developer setting of the database leaks in)."""
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("ALPR_DB_URL", raising=False)
    monkeypatch.delenv("ALPR_CACHE_DIR", raising=False)
    return tmp_path / "ws"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --------------------------------------------------------------------------------------------- flags


def test_parse_args_defaults_and_types():
    args = predict._parse_args(["--model", "latest", "a.jpg", "folder"])
    assert args.model == "latest"
    assert args.inputs == [Path("a.jpg"), Path("folder")]
    assert (args.out, args.device, args.batch_size) == (None, "cpu", 4)
    args = predict._parse_args(
        ["--model", "gs://b/m", "x.png", "--out", "r/o.json", "--device", "cuda:0", "--batch-size", "16"]
    )
    assert (args.out, args.device, args.batch_size) == (Path("r/o.json"), "cuda:0", 16)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["a.jpg"], "--model"),  # the model is required
        (["--model", "m"], "IMAGE_OR_DIR"),  # at least one input
        (["--model", "m", "a.jpg", "--batch-size", "four"], "--batch-size"),
    ],
)
def test_parse_args_errors_name_the_flag(argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        predict._parse_args(argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_help_names_the_command(capsys):
    with pytest.raises(SystemExit) as exc:
        predict._parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "python -m alpr.serving.predict" in out and "--model" in out and "latest" in out


# --------------------------------------------------------------------------------------------- inputs


def test_folders_expand_to_their_images_sorted_files_kept_as_given(tmp_path):
    folder = tmp_path / "in"
    for name in ["b.jpg", "a.PNG", "c.jpeg", "d.webp", "e.tiff", "f.bmp", "g.tif", "notes.txt", "labels.json", "noext"]:
        _touch(folder / name)
    _touch(folder / "sub" / "deeper.jpg")  # not recursive
    given = _touch(tmp_path / "odd.name.txt")  # an explicit file is kept whatever its suffix
    images = predict.collect_images([given, folder])
    assert images[0] == given
    assert [p.name for p in images[1:]] == ["a.PNG", "b.jpg", "c.jpeg", "d.webp", "e.tiff", "f.bmp", "g.tif"]
    assert {p.suffix.lower() for p in images[1:]} <= predict.IMAGE_SUFFIXES
    (tmp_path / "empty").mkdir()
    assert predict.collect_images([tmp_path / "empty"]) == []


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg: no such file or directory"):
        predict.collect_images([tmp_path / "nope.jpg"])


def test_inputs_sharing_a_file_name_are_refused_before_the_model_is_loaded(tmp_path, workspace):
    one, two = _touch(tmp_path / "a" / "car.jpg"), _touch(tmp_path / "b" / "car.jpg")
    with pytest.raises(ValueError, match="car.jpg"):
        predict.predict(str(tmp_path / "no-model-needed"), [one, two])


# --------------------------------------------------------------------------------------------- exit codes


def test_missing_input_exits_2_naming_it(tmp_path, workspace, capsys):
    assert predict.main(["--model", str(tmp_path / "no-model"), str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.jpg" in err


def test_missing_model_is_named_and_nothing_is_written(tmp_path, workspace, capsys):
    image = _touch(tmp_path / "car.jpg")
    out = tmp_path / "out.json"
    assert predict.main(["--model", str(tmp_path / "no-model"), str(image), "--out", str(out)]) != 0
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and str(tmp_path / "no-model") in captured.err
    assert captured.out == "" and not out.exists()  # nothing written on failure


def test_missing_model_exits_1_as_a_model_error(tmp_path, workspace):
    image = _touch(tmp_path / "car.jpg")
    assert predict.main(["--model", str(tmp_path / "no-model"), str(image)]) == 1


def test_incomplete_model_directory_exits_1_naming_the_missing_file(tmp_path, workspace, capsys):
    model = tmp_path / "model"
    _touch(model / "config.py")
    image = _touch(tmp_path / "car.jpg")
    assert predict.main(["--model", str(model), str(image)]) == 1
    assert "model.pth missing" in capsys.readouterr().err


def test_latest_without_a_selected_model_exits_1(tmp_path, workspace, capsys):
    image = _touch(tmp_path / "car.jpg")
    assert predict.main(["--model", "latest", str(image)]) == 1
    assert "no selected model" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- end to end


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
        check_reading(reading)


def test_predict_cli_errors(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    assert predict.main(["--model", str(tiny_model_dir), str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert predict.main(["--model", str(tmp_path / "no-model"), str(tiny_model_dir / "model.json")]) != 0


def test_predict_cli_prints_only_the_json_to_standard_output(tiny_model_dir, tiny_coco, workspace, capsys):
    image = sorted((tiny_coco / "images").glob("*.jpg"))[0]
    assert predict.main(["--model", str(tiny_model_dir), str(image), "--batch-size", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == [image.name]
    check_reading(result[image.name])


def test_predict_cli_names_an_undecodable_image(tiny_model_dir, tmp_path, workspace, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out.json"
    assert predict.main(["--model", str(tiny_model_dir), str(broken), "--out", str(out)]) == 2
    assert "broken.jpg" in capsys.readouterr().err and not out.exists()
