"""The pipeline's parameters (pipelines.parameters): described in the compiled pipeline, checked before a run."""

import pytest
import yaml

from alpr.defaults import DeployDefaults, TrainingDefaults, TuningDefaults
from alpr.kubeflow.kserve import DEPLOY_TARGETS
from alpr.model.metrics import METRIC_KEYS
from pipelines import run as pipeline
from pipelines.parameters import (
    DEFAULTS,
    ParameterError,
    check_parameters,
    parameter_descriptions,
    pipeline_docstring,
)


def _compiled_parameters(tmp_path) -> dict:
    spec = next(yaml.safe_load_all(pipeline.compile_pipeline(tmp_path / "p.yaml").read_text()))
    return spec["root"]["inputDefinitions"]["parameters"]


# -- descriptions: the Attributes of alpr.defaults, in the compiled pipeline (the KFP UI's run form)


def test_every_compiled_parameter_has_its_description(tmp_path):
    params = _compiled_parameters(tmp_path)
    descriptions = parameter_descriptions()
    assert set(params) == set(DEFAULTS) == set(descriptions)
    for name, spec in params.items():
        assert spec.get("description"), f"pipeline parameter {name} has no description in the compiled pipeline"
        assert spec["description"] == descriptions[name]
    assert "AdamW base learning rate" in params["lr"]["description"]
    assert params["tune_algorithm"]["description"] == "random, tpe or bayesianoptimization."  # no reST quotes


def test_descriptions_come_from_the_defaults_docstrings_only():
    descriptions = parameter_descriptions()
    for cls in (TrainingDefaults, DeployDefaults, TuningDefaults):
        for name in cls.__dataclass_fields__:
            first_words = " ".join(descriptions[name].split()[:4])
            assert first_words in " ".join(cls.__doc__.replace("``", "").split()), (cls.__name__, name)
    # a description that spans lines in the docstring is one line here (and in the run form)
    assert "\n" not in descriptions["plate_input_size"] and "0: no plate detector" in descriptions["plate_input_size"]
    doc = pipeline_docstring()
    assert doc.splitlines()[2] == "Args:" and doc.count("\n    ") == len(DEFAULTS)
    assert pipeline.alpr_pipeline.pipeline_func.__doc__ == doc


def test_the_cli_help_shows_the_same_descriptions(capsys):
    with pytest.raises(SystemExit):
        pipeline.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "AdamW base learning rate. (default: 0.004)" in out
    assert "the metric Evaluate selects the checkpoint by" in out


# -- values checked before anything runs


def test_the_defaults_pass():
    check_parameters(DEFAULTS)
    check_parameters({**DEFAULTS, "deploy_target": ""})  # "" is read as auto
    for target in DEPLOY_TARGETS:
        check_parameters({**DEFAULTS, "deploy_target": target})
    for metric in METRIC_KEYS:
        check_parameters({**DEFAULTS, "selection_metric": metric})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"selection_metric": "accuracy"}, "selection_metric='accuracy' (one of eir, "),
        ({"deploy_target": "gke"}, "deploy_target='gke' (one of auto, local, kubernetes; empty: auto)"),
        ({"train_fraction": 0.9}, "train_fraction/val_fraction/test_fraction: fractions must sum to 1"),
        ({"val_fraction": -0.1, "train_fraction": 1.0}, "train_fraction/val_fraction/test_fraction"),
        ({"epochs": 0}, "epochs=0"),
        ({"input_size": 100}, "input_size=100"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"plate_input_size": 160}, "plate_input_size=160"),  # below input_size 320
        ({"config": "no_such.py"}, "config='no_such.py' is not a file of configs/ (one of "),
        ({"annotation_version": " "}, "annotation_version is empty"),
        ({"min_eir_improvement": -0.5}, "min_eir_improvement=-0.5"),
        ({"min_eir_improvement": float("nan")}, "min_eir_improvement=nan"),
        ({"tune_algorithm": "grid"}, "tune_algorithm='grid' (one of random, tpe, bayesianoptimization)"),
        ({"tune_max_trials": 0}, "tune_max_trials=0 (an integer >= 1)"),
        ({"tune_parallel": 0}, "tune_parallel=0"),
        ({"tune_max_failed": -1}, "tune_max_failed=-1"),
        ({"tune_timeout": -5}, "tune_timeout=-5"),
    ],
)
def test_a_wrong_value_is_named_with_what_is_valid(change, message):
    with pytest.raises(ParameterError) as exc:
        check_parameters({**DEFAULTS, **change})
    assert message in str(exc.value)
    assert str(exc.value).startswith("invalid pipeline parameter(s): ")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as exc:
        check_parameters({**DEFAULTS, "selection_metric": "x", "deploy_target": "y", "epochs": 0})
    assert len(exc.value.problems) == 3


def test_a_missing_parameter_is_a_key_error():
    values = dict(DEFAULTS)
    del values["lr"]
    with pytest.raises(KeyError, match="lr"):
        check_parameters(values)


@pytest.mark.parametrize(
    "argv",
    [
        ["--run", "--selection-metric", "accuracy"],
        ["--run", "--deploy-target", "gke"],
        ["--run", "--epochs", "0"],
        ["--run", "--train-fraction", "0.5"],
        ["--run", "--host", "http://127.0.0.1:9", "--tune-algorithm", "grid"],
    ],
)
def test_run_refuses_a_wrong_value_before_anything_runs(argv, tmp_path, capsys):
    """Exit code 2 and the message, before a workspace is made, a pipeline compiled or a server asked."""
    ws = tmp_path / "ws"
    with pytest.raises(SystemExit) as exc:
        pipeline.main([*argv, "--workspace", str(ws)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid pipeline parameter(s)" in err
    assert not ws.exists()


def test_the_alpr_command_refuses_it_too(capsys):
    from pipelines import cli

    assert cli.main(["run", "--selection-metric", "accuracy"]) == 2
    err = capsys.readouterr().err
    assert "selection_metric='accuracy'" in err and "eir" in err
