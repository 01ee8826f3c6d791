"""The ``alpr`` console script (pipelines.cli): every sub-command is reachable and has its own --help."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import cli

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command.name in out
    assert {c.name for c in cli.COMMANDS} == {
        "run",
        "compile",
        "tune",
        "serve",
        "predict",
        "export-onnx",
        "deploy",
        "data",
        "db",
        "monitor",
    }


@pytest.mark.parametrize("command", [c.name for c in cli.COMMANDS])
def test_every_command_has_its_own_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_every_command_resolves_to_a_function():
    for command in cli.COMMANDS:
        assert callable(command.resolve()), command.target


def test_unknown_or_missing_command_is_a_usage_error(capsys):
    assert cli.main(["nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_data_subcommands_are_the_dataset_tools(capsys):
    assert cli.main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("synth", "import", "register", "list", "show"):
        assert name in out


def test_compile_writes_the_pipeline(tmp_path):
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "-o", str(out)]) == 0
    ir = next(yaml.safe_load_all(out.read_text()))  # the pipeline spec, then its platforms.kubernetes document
    assert ir["pipelineInfo"]["name"] == "alpr-train"


def test_run_takes_the_pipeline_parameters():
    from pipelines import run

    args = run._parse_args(["--epochs", "3"], mode="run")
    assert args.run and not args.compile and not args.katib and args.epochs == 3
    with pytest.raises(SystemExit):
        run._parse_args(["--compile"], mode="run")  # the mode is implied by the sub-command


def test_the_installed_console_script_and_pipeline_py(tmp_path):
    exe = shutil.which("alpr", path=str(Path(sys.executable).parent))
    assert exe, "the alpr console script is installed with the package (make install)"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "serve" in done.stdout
    out = tmp_path / "q.yaml"
    done = subprocess.run(
        [sys.executable, "pipeline.py", "--compile", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()
