"""The pipeline's embedded defaults: what ``python pipeline.py --run`` trains with when given no flags.

This module is the one source of these values. The pipeline turns each entry of :data:`TRAINING_DEFAULTS`,
:data:`DEPLOY_DEFAULTS` and :data:`TUNING_DEFAULTS` into a pipeline parameter and a command-line flag;
:class:`alpr.model.training.Hyperparameters` takes its field defaults from :data:`TRAINING_DEFAULTS`; the tuner
(:class:`alpr.tuning.options.TuningOptions`, the trial entry point, ``katib/experiment.yaml``) and
``benchmarks/bench_train.py`` read the same values. The mmdetection configs in ``configs/`` hold none of them
(:func:`alpr.model.training.build_config` sets them). The figures behind these choices are in
``docs/detection_design.md`` and ``docs/bench_train.md``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

#: Annotation version created by the first local run (synthetic plates).
BOOTSTRAP_VERSION: Final = "annotations-v1"
#: Synthetic images in the bootstrap annotation version (80 % train, 10 % val, 10 % test).
BOOTSTRAP_IMAGES: Final = 2000
#: The synthesizer's conditions preset the bootstrap draws with (``alpr.data.synth.PRESETS``: ``classic``, ``road``;
#: or presets joined by ``+``, ``classic+road``, sharing the images: ``alpr.data.synth.mixture``).
BOOTSTRAP_CONDITIONS: Final = "classic"


class _Parameters(Mapping[str, object]):
    """Read-only mapping view of a frozen dataclass of pipeline parameters: ``d["lr"]``, ``dict(d)``, ``{**d}``,
    ``d.items()`` iterate the fields in declaration order (the order of the pipeline's flags)."""

    def __getitem__(self, name: str) -> object:
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def asdict(self) -> dict[str, object]:
        """The parameters as a new ``{name: value}`` dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True, eq=True)
class TrainingDefaults(_Parameters):
    """Record, Train and Evaluate parameters and their defaults (each a pipeline parameter of the same name).

    The ``Attributes:`` here and in :class:`DeployDefaults` and :class:`TuningDefaults` are the parameters'
    descriptions: in the compiled pipeline (the KFP UI's run form) and in ``--help``
    (``pipelines.parameters.parameter_descriptions``). Describe every field, in one sentence or two.

    Attributes:
        annotation_version: the annotation version Record splits.
        train_fraction: share of the images in the train split (the three fractions sum to 1).
        val_fraction: share in the val split (chooses checkpoints and reading thresholds).
        test_fraction: share in the test split (only reports).
        split_seed: seed of the split (a file's split depends on its name and this seed only).
        config: leaf mmdetection config in ``configs/``.
        lr: AdamW base learning rate.
        epochs: training epochs.
        batch_size: training images per iteration.
        input_size: square network input, pixels.
        weight_decay: AdamW weight decay.
        val_interval: validate (and keep a checkpoint) every this many epochs.
        seed: random seed of training (weights, sampling, augmentation).
        plate_input_size: the plate detector's input (long side, pixels) of the two-stage design
            (docs/detection_design.md); 0: no plate detector, the one detector of ``config`` finds the plates.
        plate_epochs: the plate detector's training epochs (when ``plate_input_size`` is set).
        load_from: a warm start: the model whose weights training starts from (a model directory, a storage URI or
            ``latest``, the latest selected model), its plate detector's too for the two-stage design; the
            schedule starts afresh. Empty: random weights (``alpr.model.warm_start``).
        train_workers: machines Train runs on together (distributed data parallel; README "Scale out"); above 1,
            Train hands the training to a Kubeflow Trainer ``TrainJob`` on a cluster, or to ``torchrun`` with that
            many processes on this machine. 1: one process, in the step itself.
        train_gpus_per_worker: GPUs of each worker, one training process per GPU (more than 1 also trains
            distributed); 0: the CPU, or the step's own GPU when ``train_workers`` is 1.
        selection_metric: the metric Evaluate selects the checkpoint by (``eir``, ``mAP``, …).
    """

    annotation_version: str = BOOTSTRAP_VERSION
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    config: str = "rtmdet_tiny_alpr.py"
    lr: float = 0.004
    epochs: int = 16
    batch_size: int = 8
    input_size: int = 320
    weight_decay: float = 0.05
    val_interval: int = 2
    seed: int = 0
    plate_input_size: int = 0
    plate_epochs: int = 6
    load_from: str = ""
    train_workers: int = 1
    train_gpus_per_worker: int = 0
    selection_metric: str = "eir"

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        """``(train_fraction, val_fraction, test_fraction)``, in the order of :data:`alpr.spec.SPLITS`."""
        return (self.train_fraction, self.val_fraction, self.test_fraction)


@dataclass(frozen=True, eq=True)
class DeployDefaults(_Parameters):
    """The pipeline parameters of its Deploy step and their defaults.

    Attributes:
        deploy_target: ``auto``, ``local`` or ``kubernetes`` (``alpr.kubeflow.kserve.DEPLOY_TARGETS``; ``""`` is
            read as ``auto``). ``auto``: ``$ALPR_DEPLOY_TARGET`` when set, else ``kubernetes`` in a pod of a
            cluster (``KUBERNETES_SERVICE_HOST`` set), else ``local`` (``alpr.kubeflow.kserve.resolve_target``).
        min_eir_improvement: how much the new model's test EIR must beat the served model's by (0: strictly higher).
    """

    deploy_target: str = "auto"
    min_eir_improvement: float = 0.0


@dataclass(frozen=True, eq=True)
class TuningDefaults(_Parameters):
    """The pipeline parameters of its Tune step (off by default) and their defaults.

    Attributes:
        tune: run the Tune step before Train.
        tune_algorithm: ``random``, ``tpe`` or ``bayesianoptimization``.
        tune_max_trials: trials in total.
        tune_parallel: trials at once.
        tune_max_failed: the study fails when more trials than this failed.
        tune_timeout: seconds to wait for the study; 0: no limit.
    """

    tune: bool = False
    tune_algorithm: str = "tpe"
    tune_max_trials: int = 12
    tune_parallel: int = 2
    tune_max_failed: int = 3
    tune_timeout: int = 0


#: Record, Train and Evaluate parameters and their defaults (a :class:`TrainingDefaults`; also a read-only mapping).
TRAINING_DEFAULTS: Final = TrainingDefaults()
#: The Deploy step's parameters and their defaults (a :class:`DeployDefaults`; also a read-only mapping).
DEPLOY_DEFAULTS: Final = DeployDefaults()
#: The Tune step's parameters and their defaults (a :class:`TuningDefaults`; also a read-only mapping).
TUNING_DEFAULTS: Final = TuningDefaults()

#: Image of the pipeline's components (built from the Dockerfile's ``components`` target); ``ALPR_COMPONENT_IMAGE``
#: overrides it (see :func:`component_image`).
DEFAULT_COMPONENT_IMAGE: Final = "ghcr.io/alpr-kubeflow/alpr-components:0.1.0-python3.11"


def component_image() -> str:
    """The components image: ``$ALPR_COMPONENT_IMAGE`` when set, else :data:`DEFAULT_COMPONENT_IMAGE`."""
    return os.environ.get("ALPR_COMPONENT_IMAGE", DEFAULT_COMPONENT_IMAGE)
