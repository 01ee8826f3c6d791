"""The mmengine hook that makes a training run report to the tuner: metric lines after every validation.

Registered in mmdetection's hook registry when imported (the trial entry point lists it in the config's
``custom_imports``). See :mod:`alpr.tuning.collector` for the line format.
"""

from __future__ import annotations

import sys
from typing import Any

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from alpr.model.metrics import short_metrics
from alpr.tuning.collector import OBJECTIVE, format_metrics


@HOOKS.register_module()
class TrialMetricsHook(Hook):
    """Print ``eir``, ``mAP`` and ``loss`` in the collector format after every validation (to stdout).

    ``eir`` and ``mAP`` are the validation's EIR and COCO bbox mAP; ``loss`` is the mean training loss over the
    iterations since the previous validation. A metric that is NaN (e.g. no plates in the split) is left out.
    """

    priority = "LOW"

    def __init__(self) -> None:
        self._loss_sum = 0.0
        self._loss_n = 0

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Accumulate the iteration's total loss (``outputs["loss"]``, a tensor or a float)."""
        if outputs and "loss" in outputs:
            loss = outputs["loss"]
            self._loss_sum += float(loss.detach() if hasattr(loss, "detach") else loss)
            self._loss_n += 1

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Print the metric lines of this validation and reset the loss average."""
        short = short_metrics(metrics or {})
        values = {
            OBJECTIVE: short.get("eir"),
            "mAP": short.get("mAP"),
            "loss": self._loss_sum / self._loss_n if self._loss_n else None,
        }
        if runner.rank == 0:  # a distributed trial: one set of lines, rank 0's (the metrics are broadcast)
            for line in format_metrics(values):
                print(line, file=sys.stdout, flush=True)
        self._loss_sum, self._loss_n = 0.0, 0
