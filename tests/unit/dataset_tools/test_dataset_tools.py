"""End-to-end tests of the ``python -m dataset_tools`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from alpr import spec
from alpr.data.labelme import MAX_BYTES, MAX_SHAPES
from dataset_tools.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_synth_writes_images_and_labelme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    code = main(["synth", "--out", str(out), "--n", "3", "--seed", "2", "--layouts", "two_line", "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"synth_{i:06d}.jpg" for i in range(3)]
    for json_path in sorted(out.glob("*.json")):
        labelme = json.loads(json_path.read_text(encoding="utf-8"))
        assert labelme["imagePath"] == json_path.with_suffix(".jpg").name
        assert {s["label"] for s in labelme["shapes"] if spec.is_plate(s["label"])} == {spec.PLATE_TWO_LINE}
    assert "wrote 3 images" in capsys.readouterr().out


def test_synth_is_reproducible_from_the_command_line(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--n", "2", "--seed", "8", "--no-progress"]) == 0
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_synth_draws_road_conditions(tmp_path: Path) -> None:
    from alpr.data.synth import ROAD

    out = tmp_path / "road"
    assert main(["synth", "--out", str(out), "--n", "2", "--seed", "3", "--conditions", "road", "--no-progress"]) == 0
    for json_path in sorted(out.glob("*.json")):
        labelme = json.loads(json_path.read_text(encoding="utf-8"))
        assert (labelme["imageWidth"], labelme["imageHeight"]) in ROAD.frame_sizes


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "--n", "1", "--conditions", "rainy"], "rainy"),
        (["synth", "--n", "1", "--layouts", "three_line"], "three_line"),
        (["synth", "--n", "-2"], "-2"),
        (["synth", "--n", "many"], "many"),
        (["synth"], "--out"),
        ([], "COMMAND"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_usage_errors_exit_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if argv[:1] == ["synth"] and "--out" not in argv and argv != ["synth"]:
        argv = [*argv, "--out", str(tmp_path / "out")]
    assert main(argv) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runtime_error_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["synth", "--out", str(blocker / "out"), "--n", "1", "--no-progress"]) == 1
    assert "error" in capsys.readouterr().err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--out", "--n", "--seed", "--layouts", "--no-progress"):
        assert option in help_text


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dataset_tools", "synth", "--out", str(tmp_path), "--n", "1", "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "synth_000000.json").is_file() and (tmp_path / "synth_000000.jpg").is_file()


def test_import_refuses_a_10_mb_file_of_56840_characters_in_one_plate_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The defect report: one plate outline holding 56,840 character shapes was accepted as good."""
    folder = tmp_path / "labelme"
    folder.mkdir()
    Image.new("RGB", (640, 480), (90, 120, 150)).save(folder / "crowded.png")
    plate = {
        "label": "plate_one_line",
        "points": [[20, 200], [620, 200], [620, 300], [20, 300]],
        "group_id": None,
        "description": "",
        "shape_type": "polygon",
        "flags": {},
        "mask": None,
    }
    at = [(30.5 + i % 571, 210.5 + i % 67) for i in range(56_840)]
    chars = [
        {
            **plate,
            "label": spec.CHARACTERS[i % 15],
            "points": [[x, y], [x + 8.5, y], [x + 8.5, y + 20.25], [x, y + 20.25]],
        }
        for i, (x, y) in enumerate(at)
    ]
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [plate, *chars],
        "imagePath": "crowded.png",
        "imageData": None,
        "imageHeight": 480,
        "imageWidth": 640,
    }
    path = folder / "crowded.json"
    path.write_text(json.dumps(doc))
    assert 9_000_000 < path.stat().st_size < MAX_BYTES  # about 10 MB: the byte limit lets it through

    start = time.perf_counter()
    json.loads(path.read_bytes())
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    code = main(["import", str(folder), "--out", str(tmp_path / "out"), "--no-progress"])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 1 and not (tmp_path / "out").exists()
    assert (
        f"  {path}\n    - 56841 shapes, over the limit of {MAX_SHAPES} per file; 56840 character shapes for "
        "1 plate outline: shapes[0] ('plate_one_line')" in out
    )
    assert "0 good, 1 with problems" in out and "REFUSED" in out and "nothing written" in err
    assert elapsed < 3 * parse_s + 2, (elapsed, parse_s)  # about one parse: no shape checked, no plate read
