"""The settings of a tuning study, shared by the Katib Experiment and the local twin."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from alpr.defaults import TRAINING_DEFAULTS, TUNING_DEFAULTS, component_image
from alpr.tuning.collector import ADDITIONAL_METRICS, OBJECTIVE

#: Search algorithms, by their Katib names (the local twin maps each to an Optuna sampler).
ALGORITHMS = ("random", "tpe", "bayesianoptimization")
#: Katib names a Kubernetes object: a DNS-1123 label, short enough for its trials' and jobs' names.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_NAME = 40
#: Characters allowed in values that end up on a trial's command line (Katib joins the args into a shell line).
_SHELL_SAFE = re.compile(r"[\w./:@+=,-]+")
#: The Hyperparameters fields every trial of a study gets unchanged: the pipeline's, not searched.
FIXED_HYPERPARAMETERS: tuple[str, ...] = ("epochs", "val_interval", "seed")


def default_fixed() -> dict[str, object]:
    """``{field: the pipeline's default}`` for :data:`FIXED_HYPERPARAMETERS`
    (:data:`alpr.defaults.TRAINING_DEFAULTS`)."""
    return {k: TRAINING_DEFAULTS[k] for k in FIXED_HYPERPARAMETERS}


def default_study_name() -> str:
    """``alpr-tune-<UTC yyyymmdd-hhmmss>``."""
    return time.strftime("alpr-tune-%Y%m%d-%H%M%S", time.gmtime())


def study_name_for(run_name: str) -> str:
    """A study name (DNS-1123 label, <= 40 characters) for the Tune step of pipeline run ``run_name``: readable,
    unique per call (a retried step starts a new study rather than colliding with the last one's name)."""
    import hashlib

    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")[-20:].strip("-") or "run"
    digest = hashlib.sha1(f"{run_name}-{time.time_ns()}".encode()).hexdigest()[:8]
    return f"tune-{slug}-{digest}"


@dataclass
class TuningOptions:
    """What to tune and how; the Katib Experiment and the Optuna study read the same fields. The defaults of the
    data, split, config, fixed hyperparameters and study size are the pipeline's (:mod:`alpr.defaults`).

    Attributes:
        name: study / Experiment name (DNS-1123 label, at most 40 characters).
        data: the trials' ``--data``: a training or annotation version name (on a cluster a pod cannot see a local
            folder), or a folder (local twin); default: the pipeline's annotation version.
        split_fractions: train/val/test split when ``data`` is an annotation version (the pipeline's).
        split_seed: split seed when ``data`` is an annotation version.
        algorithm: ``random``, ``tpe`` or ``bayesianoptimization``.
        max_trials: trials in total (Katib ``maxTrialCount``).
        parallel: trials at once (``parallelTrialCount``; local: concurrent subprocesses).
        max_failed: the study fails when more trials than this failed (``maxFailedTrialCount``).
        objective: the metric to optimise (the selection metric, EIR).
        direction: ``maximize`` or ``minimize``.
        additional_metrics: metrics recorded beside the objective.
        goal: stop when the objective reaches this value (Katib ``goal``; None: run all trials).
        early_stopping: median stopping (Katib ``medianstop``; local: Optuna's MedianPruner).
        min_trials_required: completed trials before median stopping starts (``min_trials_required``).
        start_step: reports a trial must have made before it can be stopped (``start_step``).
        fixed: Hyperparameters fields every trial gets unchanged (default: the pipeline's epochs, val_interval
            and seed, :func:`default_fixed`).
        config: leaf mmdetection config of the trials (default: the pipeline's).
        random_state: seed of the search algorithm.
        timeout_s: give up waiting after this many seconds (None: no limit). Local: running trials are killed.
        num_workers: dataloader workers of each trial.
        namespace: Kubernetes namespace of the Experiment.
        image: the trials' image (the components image, :func:`alpr.defaults.component_image`).
        service_account: the trials' service account (None: the namespace's default).
        cpu: CPU request (and limit) of a trial.
        memory: memory request (and limit) of a trial.
        gpus: GPUs per trial (0: none; the resource name, node selector and tolerations are those of
            :class:`alpr.kubeflow.platform.PlatformSettings`, as for Train).
        trial_workers: pods (nodes) per trial. 1: a trial is one pod (a ``batch/v1`` Job); more: a trial is a
            Kubeflow Trainer ``TrainJob`` of that many nodes, trained data-parallel under ``torchrun``
            (:func:`alpr.tuning.katib.render_experiment`).
        trial_gpus_per_worker: GPUs of each of a trial's pods, one ``torchrun`` process per GPU (0: ``gpus``). More
            than 1 makes a trial a ``TrainJob`` even with one worker. Set ``gpus`` or this, or both to the same
            number.

    The trials' backend settings (Secrets, ConfigMap) are the pipeline's: :class:`alpr.kubeflow.platform.PlatformSettings`.

    Raises:
        ValueError: a value out of range, naming the field.
    """

    name: str = field(default_factory=default_study_name)
    data: str = TRAINING_DEFAULTS.annotation_version
    split_fractions: tuple[float, float, float] = TRAINING_DEFAULTS.split_fractions
    split_seed: int = TRAINING_DEFAULTS.split_seed
    algorithm: str = TUNING_DEFAULTS.tune_algorithm
    max_trials: int = TUNING_DEFAULTS.tune_max_trials
    parallel: int = TUNING_DEFAULTS.tune_parallel
    max_failed: int = TUNING_DEFAULTS.tune_max_failed
    objective: str = OBJECTIVE
    direction: str = "maximize"
    additional_metrics: tuple[str, ...] = ADDITIONAL_METRICS
    goal: float | None = None
    early_stopping: bool = True
    min_trials_required: int = 3
    start_step: int = 2
    fixed: dict = field(default_factory=default_fixed)
    config: str = TRAINING_DEFAULTS.config
    random_state: int = 0
    timeout_s: float | None = None
    num_workers: int = 1
    namespace: str = "kubeflow"
    image: str = ""
    service_account: str | None = None
    cpu: str = "4"
    memory: str = "12Gi"
    gpus: int = 0
    trial_workers: int = 1
    trial_gpus_per_worker: int = 0

    def __post_init__(self) -> None:
        if not self.image:
            self.image = component_image()
        problems = []
        if not (_NAME.fullmatch(self.name) and len(self.name) <= _MAX_NAME):
            problems.append(f"name={self.name!r} (lower-case letters, digits and '-', at most {_MAX_NAME})")
        if self.algorithm not in ALGORITHMS:
            problems.append(f"algorithm={self.algorithm!r} (one of {', '.join(ALGORITHMS)})")
        for key, low in (
            ("max_trials", 1),
            ("parallel", 1),
            ("max_failed", 0),
            ("min_trials_required", 1),
            ("start_step", 1),
            ("num_workers", 0),
            ("gpus", 0),
            ("trial_workers", 1),
            ("trial_gpus_per_worker", 0),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{key}={value!r} (an integer >= {low})")
        if (
            all(type(n) is int for n in (self.gpus, self.trial_gpus_per_worker))
            and self.gpus
            and self.trial_gpus_per_worker
            and self.gpus != self.trial_gpus_per_worker
        ):
            problems.append(
                f"gpus={self.gpus!r} and trial_gpus_per_worker={self.trial_gpus_per_worker!r} (GPUs of each of a "
                "trial's pods: set one of them, or both to the same number)"
            )
        counts = (self.trial_workers, self.trial_gpus_per_worker)
        if all(type(n) is int for n in counts) and self.distributed_trials and not self.name[:1].isalpha():
            # a TrainJob's name is an RFC 1035 label; Katib names each trial's after it: <name>-<8 characters>
            problems.append(f"name={self.name!r} (must start with a letter when trials are TrainJobs)")
        if self.direction not in ("maximize", "minimize"):
            problems.append(f"direction={self.direction!r} (maximize or minimize)")
        if self.timeout_s is not None and not self.timeout_s > 0:
            problems.append(f"timeout_s={self.timeout_s!r} (> 0, or None for no limit)")
        if problems:
            raise ValueError("invalid tuning option(s): " + "; ".join(problems))

    def check_shell_safe(self) -> None:
        """Raise ValueError unless the values that reach a Katib trial's command line are shell-safe (Katib's
        StdOut collector joins the container's command and args into one ``sh -c`` line)."""
        bad = [
            f"{key}={getattr(self, key)!r}"
            for key in ("data", "config", "image", "objective")
            if not _SHELL_SAFE.fullmatch(str(getattr(self, key)))
        ]
        bad += [f"fixed[{k!r}]={v!r}" for k, v in self.fixed.items() if not _SHELL_SAFE.fullmatch(str(v))]
        if bad:
            raise ValueError(
                "tuning option(s) unsafe on a trial's command line (letters, digits and ./:@+=,-_ "
                "only): " + "; ".join(bad)
            )

    @property
    def worker_gpus(self) -> int:
        """GPUs of each of a trial's pods: ``trial_gpus_per_worker``, else ``gpus``."""
        return self.trial_gpus_per_worker or self.gpus

    @property
    def distributed_trials(self) -> bool:
        """Whether a trial is a distributed ``TrainJob`` (more than one worker, or more than one GPU per worker
        through ``trial_gpus_per_worker``) rather than a one-pod ``batch/v1`` Job."""
        return self.trial_workers > 1 or self.trial_gpus_per_worker > 1

    @property
    def metric_names(self) -> list[str]:
        """The objective first, then the additional metrics (Katib's order)."""
        return [self.objective, *[m for m in self.additional_metrics if m != self.objective]]
