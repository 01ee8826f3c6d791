"""The trial's metrics hook (alpr.tuning.hook.TrialMetricsHook): built by mmengine's Runner from the config's
``custom_hooks`` entry, it prints the collector's metric lines (alpr.tuning.collector) after every validation.

The Runner is a real one (a one-weight model, no dataloaders, mmengine's default hooks off so that no timer or
logger hook needs a running loop); the hook points are called through ``Runner.call_hook`` as the loops call them.
A whole training with the hook is tested by tests/unit/tuning/test_local.py (slow).
"""

import math
import re

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner

from alpr.tuning.collector import MARKER, METRICS_FILTER, OBJECTIVE, Observation, parse_lines
from alpr.tuning.hook import TrialMetricsHook

NAMES = (OBJECTIVE, "mAP", "loss")
LINE = re.compile(r"(\S+) " + METRICS_FILTER)
VAL_METRICS = {"coco/bbox_mAP": 0.8312, "coco/bbox_mAP_50": 0.95, "plate/eir": 0.736, "plate/char_accuracy": 0.9}


class _OneWeight(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(1, 1)

    def forward(self, inputs=None, data_samples=None, mode="tensor"):
        return self.w(inputs)


@pytest.fixture
def runner(tmp_path):
    no_defaults = dict(
        runtime_info=None, timer=None, sampler_seed=None, logger=None, param_scheduler=None, checkpoint=None
    )
    return Runner(
        model=_OneWeight(),
        work_dir=str(tmp_path / "work"),
        experiment_name=f"hook-{tmp_path.name}",  # mmengine's global instances are named after it
        default_scope="mmdet",
        custom_hooks=[dict(type="TrialMetricsHook")],
        default_hooks=no_defaults,
    )


def _metric_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if MARKER in line]


def test_the_config_entry_builds_the_hook(runner):
    (hook,) = runner.hooks
    assert isinstance(hook, TrialMetricsHook)
    assert hook.priority == "LOW"


def test_a_validation_prints_eir_map_and_the_mean_loss_in_the_collector_format(runner, capsys):
    _metric_lines(capsys)  # drop the Runner's own output
    runner.call_hook("after_train_iter", batch_idx=0, data_batch=None, outputs={"loss": torch.tensor(0.5)})
    runner.call_hook("after_train_iter", batch_idx=1, data_batch=None, outputs={"loss": torch.tensor(0.25)})
    runner.call_hook("after_val_epoch", metrics=VAL_METRICS)
    lines = _metric_lines(capsys)
    assert [LINE.fullmatch(line).group(2) for line in lines] == ["eir", "mAP", "loss"]
    assert {LINE.fullmatch(line).group(1) for line in lines} == {lines[0].split(" ")[0]}  # one RFC 3339 time
    assert lines[0].split(" ")[0].endswith("Z")
    observations = parse_lines(lines, NAMES)
    when = observations[0].timestamp
    assert when is not None
    assert observations == [
        Observation("eir", 0.736, when),
        Observation("mAP", 0.8312, when),
        Observation("loss", 0.375, when),
    ]


def test_the_loss_restarts_after_each_validation(runner, capsys):
    runner.call_hook("after_train_iter", batch_idx=0, data_batch=None, outputs={"loss": torch.tensor(1.0)})
    runner.call_hook("after_val_epoch", metrics=VAL_METRICS)
    runner.call_hook("after_train_iter", batch_idx=1, data_batch=None, outputs={"loss": 0.5})  # a float too
    runner.call_hook("after_train_iter", batch_idx=2, data_batch=None, outputs={"acc": 1.0})  # no loss: skipped
    runner.call_hook("after_val_epoch", metrics=VAL_METRICS)
    losses = [o.value for o in parse_lines(_metric_lines(capsys), NAMES) if o.name == "loss"]
    assert losses == [1.0, 0.5]


def test_missing_and_nan_metrics_are_left_out(runner, capsys):
    runner.call_hook("after_val_epoch", metrics={"coco/bbox_mAP": 0.5, "plate/eir": math.nan})
    assert [o.name for o in parse_lines(_metric_lines(capsys), NAMES)] == ["mAP"]  # no loss without iterations
    runner.call_hook("after_val_epoch", metrics=None)
    assert _metric_lines(capsys) == []
