"""The tuning part of pipeline.py's command line (alpr.tuning.cli): its flags, --params-from-tuning, the options
of a command line. A whole ``--katib`` run (Katib on kmock, the local twin) is tested by
tests/integration/test_tuning_pipeline.py."""

import argparse
import json
from pathlib import Path

import pytest

from alpr.defaults import TRAINING_DEFAULTS, TUNING_DEFAULTS
from alpr.tuning import cli
from alpr.tuning.options import FIXED_HYPERPARAMETERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true")
    cli.add_arguments(parser, mode)
    return parser


def _pipeline_args(**kwargs) -> argparse.Namespace:
    """A parsed command line as pipeline.py makes it: the tuning flags plus the pipeline's parameters."""
    args = _parser().parse_args([])
    for source in (TRAINING_DEFAULTS, TUNING_DEFAULTS):
        for key in source:
            setattr(args, key, source[key])
    for key, value in kwargs.items():
        setattr(args, key, value)
    return args


def test_the_flags_and_their_defaults(monkeypatch):
    monkeypatch.delenv("ALPR_KATIB_NAMESPACE", raising=False)
    args = _parser().parse_args([])
    assert args.katib is False
    assert args.tune_backend == "auto"
    assert args.tune_name is None
    assert args.tune_namespace == "kubeflow"
    assert args.tune_gpus == 0
    assert args.tune_poll == 15.0
    assert args.tune_output is None
    assert args.params_from_tuning is None


def test_the_flags_parse_their_types(tmp_path):
    args = _parser().parse_args(
        [
            "--katib",
            "--tune-backend",
            "local",
            "--tune-name",
            "my-study",
            "--tune-namespace",
            "team-a",
            "--tune-gpus",
            "2",
            "--tune-poll",
            "0.5",
            "--tune-output",
            str(tmp_path / "best.json"),
            "--params-from-tuning",
            "latest",
        ]
    )
    assert args.katib and args.tune_backend == "local" and args.tune_name == "my-study"
    assert (args.tune_namespace, args.tune_gpus, args.tune_poll) == ("team-a", 2, 0.5)
    assert args.tune_output == tmp_path / "best.json" and isinstance(args.tune_output, Path)
    assert args.params_from_tuning == "latest"


def test_the_namespace_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ALPR_KATIB_NAMESPACE", "team-b")
    assert _parser().parse_args([]).tune_namespace == "team-b"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--tune-backend", "cloud"], "--tune-backend"),
        (["--tune-gpus", "one"], "--tune-gpus"),
        (["--tune-poll", "x"], "--tune-poll"),
        (["--katib", "--run"], "--katib"),
    ],
)
def test_bad_flags_exit_naming_them(argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_without_params_from_tuning_nothing_changes():
    args = _pipeline_args(lr=0.5)
    assert cli.apply_tuned_params(args) == {}
    assert args.lr == 0.5


def test_tuned_params_from_a_json_file_are_set_on_the_args(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"hyperparameters": {"lr": 0.002, "input_size": 256, "epochs": 6}}))
    args = _pipeline_args(lr=0.5, params_from_tuning=str(path))
    assert cli.apply_tuned_params(args) == {"lr": 0.002, "input_size": 256, "epochs": 6}
    assert (args.lr, args.input_size, args.epochs) == (0.002, 256, 6)
    assert args.batch_size == TRAINING_DEFAULTS.batch_size  # the others untouched


def test_tuned_params_that_are_not_pipeline_parameters_are_refused(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"lr": 0.002, "weight_decay": 0.01}))
    args = argparse.Namespace(params_from_tuning=str(path), lr=0.5)  # no weight_decay parameter
    with pytest.raises(ValueError, match="tuned parameters weight_decay are not pipeline parameters"):
        cli.apply_tuned_params(args)
    assert args.lr == 0.5  # nothing set


def test_a_study_name_needs_the_store(tmp_path, settings):
    args = _pipeline_args(params_from_tuning="nope")
    with pytest.raises(LookupError, match="no metadata store"):
        cli.apply_tuned_params(args)
    with pytest.raises(LookupError, match="no study 'nope'"):
        cli.apply_tuned_params(args, settings)


def test_the_options_of_a_command_line():
    args = _pipeline_args(
        tune_name="cli-study",
        tune_namespace="team-a",
        annotation_version="annotations-v3",
        train_fraction=0.7,
        val_fraction=0.2,
        test_fraction=0.1,
        split_seed=4,
        tune_algorithm="random",
        tune_max_trials=5,
        tune_parallel=1,
        tune_max_failed=0,
        tune_timeout=0,
        config="my.py",
        epochs=3,
        val_interval=1,
        seed=9,
        tune_gpus=1,
    )
    options = cli.options_from_args(args)
    assert (options.name, options.namespace, options.data) == ("cli-study", "team-a", "annotations-v3")
    assert options.split_fractions == (0.7, 0.2, 0.1) and options.split_seed == 4
    assert (options.algorithm, options.max_trials, options.parallel, options.max_failed) == ("random", 5, 1, 0)
    assert options.timeout_s is None  # 0: no limit
    assert options.config == "my.py" and options.gpus == 1
    assert options.fixed == {"epochs": 3, "val_interval": 1, "seed": 9}
    assert tuple(options.fixed) == FIXED_HYPERPARAMETERS
    assert cli.options_from_args(_pipeline_args(tune_timeout=600)).timeout_s == 600
    assert cli.options_from_args(_pipeline_args()).name.startswith("alpr-tune-")


def test_bad_options_exit_2_before_any_study(settings, capsys):
    args = _pipeline_args(tune_max_trials=0, tune_algorithm="grid", tune_backend="local")
    assert cli.run(args, settings, prepare_local=lambda: pytest.fail("prepared for a study that cannot run")) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: invalid tuning option(s)")
    assert "max_trials=0" in out and "algorithm='grid'" in out
    assert not any(settings.workspace.rglob("metadata.db"))
