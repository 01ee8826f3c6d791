"""The trial entry point's command line (alpr.tuning.trial): the parser, lenient numbers, bad values named, and
trial_argv round-tripping through the parser. Training itself is tested by tests/unit/tuning/test_local.py (slow)."""

import dataclasses

import pytest

from alpr.model.training import Hyperparameters
from alpr.tuning import trial
from alpr.tuning.options import TuningOptions
from alpr.tuning.space import Parameter, SearchSpace

SPACE = SearchSpace(
    (
        Parameter("lr", "double", 1e-3, 1e-2, distribution="logUniform"),
        Parameter("input_size", "discrete", values=(256, 320)),
    )
)
FIXED = {"epochs": 6, "val_interval": 2, "seed": 3}


# Moved from tests/unit/tuning/test_space.py.
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--input-size", "300"),
        ("--input-size", "320.5"),
        ("--lr", "nan"),
        ("--lr", "-0.01"),
        ("--batch-size", "0"),
        ("--epochs", "two"),
    ],
)
def test_the_entry_point_refuses_bad_values_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        trial.parse_args(["--data", "x", flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_integer_flags_take_float_spellings_of_integers():
    _, hp = trial.parse_args(["--data", "x", "--input-size", "320.0", "--batch-size", "8", "--epochs", "1e1"])
    assert (hp.input_size, hp.batch_size, hp.epochs) == (320, 8, 10)


def test_the_parser_has_a_flag_for_every_hyperparameter():
    parser = trial.build_parser()
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in dataclasses.fields(Hyperparameters)} <= dests


# New.
def test_flag_spells_a_field_as_a_long_option():
    assert trial.flag("input_size") == "--input-size"
    assert trial.flag("lr") == "--lr"


def test_trial_argv_round_trips_through_the_parser():
    options = TuningOptions(
        name="round-trip",
        data="annotations-v7",
        config="my_config.py",
        num_workers=3,
        split_fractions=(0.7, 0.2, 0.1),
        split_seed=5,
        fixed=FIXED,
    )
    argv = trial.trial_argv(SPACE, options, {"lr": "0.0025", "input_size": "320.0"})
    args, hp = trial.parse_args(argv)
    assert (args.data, args.config, args.num_workers, args.split_seed) == ("annotations-v7", "my_config.py", 3, 5)
    assert tuple(args.split_fractions) == pytest.approx((0.7, 0.2, 0.1))
    assert (hp.epochs, hp.val_interval, hp.seed) == (6, 2, 3)
    assert (hp.lr, hp.input_size) == (pytest.approx(0.0025), 320)
    assert args.work_dir is None and args.keep_checkpoints is False
    # the local twin passes the resolved folder instead of options.data
    args, _ = trial.parse_args(trial.trial_argv(SPACE, options, {"lr": "0.002", "input_size": "256"}, data="/d"))
    assert args.data == "/d"


def test_the_parsers_defaults_are_the_pipelines():
    args, hp = trial.parse_args(["--data", "x"])
    assert hp == Hyperparameters()
    assert args.config == trial.DEFAULT_CONFIG and args.num_workers == 1


@pytest.mark.parametrize(
    ("fixed", "values", "message"),
    [
        ({**FIXED, "lr": 0.1}, {"lr": "0.002", "input_size": "256"}, "fixed lr also searched"),
        ({**FIXED, "momentum": 0.9}, {"lr": "0.002", "input_size": "256"}, "fixed momentum not Hyperparameters"),
        (FIXED, {"lr": "0.002"}, "no value for input_size"),
    ],
)
def test_trial_argv_names_what_is_wrong(fixed, values, message):
    options = TuningOptions(name="bad", data="v1", fixed=fixed)
    with pytest.raises(ValueError, match=message):
        trial.trial_argv(SPACE, options, values)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--num-workers", "1.5"], "--num-workers"),
        (["--split-fractions", "0.8", "inf", "0.1"], "--split-fractions"),
        (["--split-seed", "x"], "--split-seed"),
    ],
)
def test_bad_values_of_the_other_flags_are_named(argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        trial.parse_args(["--data", "x", *argv])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_data_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        trial.parse_args([])
    assert exc.value.code == 2
    assert "--data" in capsys.readouterr().err
