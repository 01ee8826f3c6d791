"""alpr.defaults: the one source of the pipeline's defaults, typed and readable as a mapping."""

import dataclasses

import pytest

from alpr import spec
from alpr.defaults import BOOTSTRAP_VERSION, DEPLOY_DEFAULTS, TRAINING_DEFAULTS, TUNING_DEFAULTS, TrainingDefaults


def test_training_defaults_are_typed_and_a_read_only_mapping():
    names = [f.name for f in dataclasses.fields(TrainingDefaults)]
    assert list(TRAINING_DEFAULTS) == names == list(TRAINING_DEFAULTS.asdict())
    assert {**TRAINING_DEFAULTS} == dict(TRAINING_DEFAULTS) == TRAINING_DEFAULTS.asdict()
    assert TRAINING_DEFAULTS["epochs"] == TRAINING_DEFAULTS.epochs and len(TRAINING_DEFAULTS) == len(names)
    assert TRAINING_DEFAULTS.annotation_version == BOOTSTRAP_VERSION
    assert "split_fractions" not in TRAINING_DEFAULTS  # a property, not a pipeline parameter
    with pytest.raises(KeyError):
        TRAINING_DEFAULTS["split_fractions"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRAINING_DEFAULTS.epochs = 3  # type: ignore[misc]
    assert TRAINING_DEFAULTS.asdict() is not TRAINING_DEFAULTS.asdict()  # a copy each time


def test_split_fractions_follow_the_split_names():
    assert TRAINING_DEFAULTS.split_fractions == tuple(TRAINING_DEFAULTS[f"{s}_fraction"] for s in spec.SPLITS)
    assert sum(TRAINING_DEFAULTS.split_fractions) == pytest.approx(1.0)


def test_tuning_defaults_are_pipeline_parameters_of_the_tune_step():
    assert list(TUNING_DEFAULTS) == [
        "tune",
        "tune_algorithm",
        "tune_max_trials",
        "tune_parallel",
        "tune_max_failed",
        "tune_timeout",
    ]
    assert TUNING_DEFAULTS["tune"] is False


def test_the_three_groups_of_pipeline_parameters_do_not_overlap():
    groups = [set(TRAINING_DEFAULTS), set(DEPLOY_DEFAULTS), set(TUNING_DEFAULTS)]
    assert len(set().union(*groups)) == sum(map(len, groups))
    assert DEPLOY_DEFAULTS.asdict() == {"deploy_target": "auto", "min_eir_improvement": 0.0}
