"""A study's options (alpr.tuning.options): validation naming each bad field, study names, the pipeline's defaults."""

import re

import pytest

from alpr.defaults import TRAINING_DEFAULTS, TUNING_DEFAULTS
from alpr.tuning.collector import ADDITIONAL_METRICS, OBJECTIVE
from alpr.tuning.options import (
    ALGORITHMS,
    FIXED_HYPERPARAMETERS,
    TuningOptions,
    default_fixed,
    default_study_name,
    study_name_for,
)

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _options(**kwargs) -> TuningOptions:
    """The options test_katib.py renders (its namespace is katib_fakes.NS, "kubeflow")."""
    base = dict(
        name="alpr-tune-test",
        namespace="kubeflow",
        data="annotations-v1",
        max_trials=3,
        parallel=1,
        max_failed=1,
        fixed={"epochs": 2, "val_interval": 1, "seed": 0},
        image="registry.local/alpr-components:test",
    )
    return TuningOptions(**{**base, **kwargs})


# Moved from tests/unit/tuning/test_katib.py.
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="Alpr_Tune"), "name="),
        (dict(name="x" * 41), "name="),
        (dict(algorithm="grid"), "algorithm="),
        (dict(max_trials=0), "max_trials="),
        (dict(parallel=True), "parallel="),
        (dict(timeout_s=0), "timeout_s="),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _options(**kwargs)


# New.
def test_every_bad_field_is_named_in_one_error():
    bad = dict(
        name="Bad_Name",
        algorithm="grid",
        max_trials=0,
        parallel=0,
        max_failed=-1,
        min_trials_required=0,
        start_step=0,
        num_workers=-1,
        gpus=1.5,
        direction="up",
        timeout_s=-5,
    )
    with pytest.raises(ValueError, match="invalid tuning option") as exc:
        _options(**bad)
    for key in bad:
        assert f"{key}=" in str(exc.value), key


@pytest.mark.parametrize("name", ["a", "alpr-tune-1", "x" * 40, "0abc9"])
def test_good_names_are_accepted(name):
    assert _options(name=name).name == name


@pytest.mark.parametrize("name", ["-abc", "abc-", "a.b", "", "x" * 41])
def test_names_that_are_not_short_dns_labels_are_refused(name):
    with pytest.raises(ValueError, match="name="):
        _options(name=name)


def test_the_defaults_are_the_pipelines():
    options = TuningOptions()
    assert options.data == TRAINING_DEFAULTS.annotation_version
    assert options.split_fractions == TRAINING_DEFAULTS.split_fractions
    assert options.split_seed == TRAINING_DEFAULTS.split_seed
    assert options.config == TRAINING_DEFAULTS.config
    assert options.algorithm == TUNING_DEFAULTS.tune_algorithm
    assert options.max_trials == TUNING_DEFAULTS.tune_max_trials
    assert options.parallel == TUNING_DEFAULTS.tune_parallel
    assert options.max_failed == TUNING_DEFAULTS.tune_max_failed
    assert options.fixed == default_fixed()
    assert options.objective == OBJECTIVE and options.direction == "maximize"
    assert options.image  # the components image, filled in when not given
    assert options.timeout_s is None
    assert options.algorithm in ALGORITHMS


def test_default_fixed_is_alpr_defaults_and_a_fresh_dict():
    assert default_fixed() == {
        "epochs": TRAINING_DEFAULTS.epochs,
        "val_interval": TRAINING_DEFAULTS.val_interval,
        "seed": TRAINING_DEFAULTS.seed,
    }
    assert tuple(default_fixed()) == FIXED_HYPERPARAMETERS
    first = default_fixed()
    first["epochs"] = -1
    assert default_fixed()["epochs"] == TRAINING_DEFAULTS.epochs
    assert TuningOptions().fixed is not TuningOptions().fixed


def test_the_default_study_name_is_a_valid_name():
    name = default_study_name()
    assert re.fullmatch(r"alpr-tune-\d{8}-\d{6}", name)
    assert TuningOptions(name=name).name == name


@pytest.mark.parametrize(
    "run_name",
    ["alpr-run-20261129", "My Run_With.Odd/Chars!", "x" * 200, "---", "", "UPPER-case-" + "9" * 50],
)
def test_study_name_for_is_a_short_dns_label_unique_per_call(run_name):
    names = {study_name_for(run_name) for _ in range(20)}
    assert len(names) == 20  # a retried step starts a new study
    for name in names:
        assert DNS_1123_LABEL.fullmatch(name) and len(name) <= 40, name
        assert name.startswith("tune-")
        TuningOptions(name=name)  # accepted as a study name


def test_study_name_for_is_readable():
    assert study_name_for("nightly-run").startswith("tune-nightly-run-")
    assert study_name_for("").startswith("tune-run-")


def test_check_shell_safe_names_the_unsafe_values():
    _options().check_shell_safe()  # the defaults are safe
    with pytest.raises(ValueError, match=r"data='v1; rm -rf /'"):
        _options(data="v1; rm -rf /").check_shell_safe()
    with pytest.raises(ValueError, match=r"fixed\['seed'\]='\$\(id\)'"):
        _options(fixed={"epochs": 2, "val_interval": 1, "seed": "$(id)"}).check_shell_safe()
    with pytest.raises(ValueError, match=r"config='a b\.py'.*image='img`x`'"):
        _options(config="a b.py", image="img`x`").check_shell_safe()


def test_metric_names_put_the_objective_first_once():
    assert _options().metric_names == [OBJECTIVE, *ADDITIONAL_METRICS]
    assert _options(objective="mAP").metric_names == ["mAP", "loss"]  # not twice
