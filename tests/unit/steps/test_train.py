"""The Train step's hyperparameters (alpr.steps.train): the pipeline's values, Tune's override, what is refused."""

import dataclasses

import pytest

from alpr.model.distributed import TrainScale
from alpr.model.training import Hyperparameters
from alpr.settings import Settings
from alpr.steps.train import resolve_hyperparameters, train_launcher, train_step

GIVEN = {
    "lr": 0.004,
    "epochs": 2,
    "batch_size": 4,
    "input_size": 128,
    "weight_decay": 0.05,
    "val_interval": 1,
    "seed": 0,
    "plate_input_size": 0,
    "plate_epochs": 1,
}


def test_without_an_override_the_given_values():
    assert resolve_hyperparameters(GIVEN) == Hyperparameters(**GIVEN)
    assert resolve_hyperparameters(Hyperparameters(**GIVEN), "") == Hyperparameters(**GIVEN)


def test_the_override_replaces_its_fields_only(caplog):
    caplog.set_level("INFO", logger="alpr.steps.train")
    hp = resolve_hyperparameters(GIVEN, '{"lr": 0.01, "input_size": 160}')
    assert dataclasses.asdict(hp) == {**GIVEN, "lr": 0.01, "input_size": 160}
    assert "hyperparameters from Tune" in caplog.text
    # the override may fix what the pipeline's values alone would not pass: checked after merging
    assert resolve_hyperparameters({**GIVEN, "input_size": 100}, '{"input_size": 96}').input_size == 96


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('{"momentum": 0.9}', "hp_override: momentum are not hyperparameters"),
        ('{"momentum": 0.9, "beta": 1, "lr": 0.1}', "hp_override: beta, momentum are not hyperparameters"),
        ("[0.1]", "hp_override: not a JSON object"),
        ("lr=0.1", "hp_override: not JSON"),
        ('{"input_size": 100}', r"invalid hyperparameter\(s\) input_size=100"),
    ],
)
def test_a_bad_override_is_refused(override, message):
    with pytest.raises(ValueError, match=message):
        resolve_hyperparameters(GIVEN, override)


def test_the_step_refuses_a_bad_override_before_any_work(tmp_path):
    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="hp_override: momentum are not hyperparameters"):
        train_step(
            settings,
            data_root=tmp_path / "no-dataset",
            out_dir=tmp_path / "out",
            run_name="r",
            hp=GIVEN,
            config="rtmdet_tiny_alpr.py",
            hp_override='{"momentum": 0.9}',
        )
    assert not (tmp_path / "out").exists()
    assert not any(settings.workspace.rglob("metadata.db"))  # no store opened: nothing to mark failed


@pytest.mark.parametrize(
    ("environ", "launcher"),
    [
        ({}, "local"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "trainjob"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "ALPR_TRAIN_LAUNCHER": "local"}, "local"),
        ({"ALPR_TRAIN_LAUNCHER": "trainjob"}, "trainjob"),
        ({"ALPR_TRAIN_LAUNCHER": "auto"}, "local"),
        ({"ALPR_TRAIN_LAUNCHER": ""}, "local"),
    ],
)
def test_distributed_training_goes_to_a_trainjob_in_a_pod_and_to_torchrun_elsewhere(environ, launcher):
    assert train_launcher(environ) == launcher


def test_a_bad_launcher_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_TRAIN_LAUNCHER", "slurm")
    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="ALPR_TRAIN_LAUNCHER='slurm': not one of auto, local, trainjob"):
        train_step(
            settings,
            data_root=tmp_path / "no-dataset",
            out_dir=tmp_path / "out",
            run_name="r",
            hp=GIVEN,
            config="rtmdet_tiny_alpr.py",
            scale=TrainScale(workers=2),
        )
    assert not (tmp_path / "out").exists()


def test_a_warm_start_from_no_model_is_refused_before_any_work(tmp_path):
    from alpr.model.inference import ModelError

    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ModelError, match="no selected model"):
        train_step(
            settings,
            data_root=tmp_path / "no-dataset",
            out_dir=tmp_path / "out",
            run_name="r",
            hp=GIVEN,
            config="rtmdet_tiny_alpr.py",
            load_from="latest",
        )
    assert not (tmp_path / "out").exists()
