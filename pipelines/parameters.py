"""The pipeline's parameters: their defaults, their descriptions and the check of their values.

- :data:`DEFAULTS`: every parameter and its default, from :mod:`alpr.defaults` (the one source of both).
- :func:`parameter_descriptions`: each parameter's description, read from the ``Attributes:`` sections of the
  docstrings of :class:`~alpr.defaults.TrainingDefaults`, :class:`~alpr.defaults.DeployDefaults` and
  :class:`~alpr.defaults.TuningDefaults`; :func:`pipeline_docstring` turns them into the pipeline function's
  ``Args:``, which KFP's compiler copies into the compiled pipeline (``root.inputDefinitions.parameters.<name>
  .description``), so the KFP UI's run form explains each parameter.
- :func:`check_parameters`: every value checked before a run is submitted (locally or to a cluster), by the
  checks of the code that will use it, so that a wrong value is refused at once rather than after an hour of
  training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from alpr.defaults import (
    DEPLOY_DEFAULTS,
    TRAINING_DEFAULTS,
    TUNING_DEFAULTS,
    DeployDefaults,
    TrainingDefaults,
    TuningDefaults,
)

#: Pipeline parameters and their defaults (the embedded defaults; each is also a command-line flag).
DEFAULTS: Final[dict[str, object]] = {
    **TRAINING_DEFAULTS,  # Record, Train, Evaluate
    **DEPLOY_DEFAULTS,  # Deploy: deploy_target, min_eir_improvement
    **TUNING_DEFAULTS,  # Tune (off by default): tune, tune_algorithm, tune_max_trials, tune_parallel, …
}
#: The classes whose docstrings describe the parameters (``Attributes:``), in the order of :data:`DEFAULTS`.
DESCRIBED_BY: Final = (TrainingDefaults, DeployDefaults, TuningDefaults)
#: The first line of the pipeline function's docstring (the ``Args:`` follow).
PIPELINE_SUMMARY: Final = (
    "Annotation version → training version → trained, evaluated, selected, tested, deployed reader."
)
#: The pipeline's tuning parameters by the :class:`alpr.tuning.options.TuningOptions` field each becomes.
TUNING_OPTION_OF: Final = {
    "algorithm": "tune_algorithm",
    "max_trials": "tune_max_trials",
    "parallel": "tune_parallel",
    "max_failed": "tune_max_failed",
    "timeout_s": "tune_timeout",
}


class ParameterError(ValueError):
    """Pipeline parameter values that would fail the run; ``problems`` names each field and what it accepts."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid pipeline parameter(s): " + "; ".join(problems))
        self.problems = problems


def parameter_descriptions() -> dict[str, str]:
    """``{parameter: description}`` for every parameter of :data:`DEFAULTS`, in its order, each description on
    one line (the docstring's line breaks and indentation folded into single spaces) and without reST's double
    backquotes (the KFP UI and ``--help`` show plain text).

    Raises:
        ValueError: a parameter has no (or an empty) ``Attributes:`` entry, or an entry names no parameter.
    """
    import docstring_parser

    found: dict[str, str] = {}
    for cls in DESCRIBED_BY:
        for param in docstring_parser.parse(cls.__doc__ or "").params:
            found[param.arg_name] = " ".join((param.description or "").split()).replace("``", "")
    missing = [name for name in DEFAULTS if not found.get(name)]
    unknown = sorted(set(found) - set(DEFAULTS))
    if missing or unknown:
        raise ValueError(
            f"the Attributes: of {', '.join(c.__name__ for c in DESCRIBED_BY)} must describe every pipeline "
            f"parameter once: missing {missing}, unknown {unknown}"
        )
    return {name: found[name] for name in DEFAULTS}


def pipeline_docstring() -> str:
    """The pipeline function's docstring: :data:`PIPELINE_SUMMARY` and an ``Args:`` section of
    :func:`parameter_descriptions` (Google style, which KFP's compiler parses with ``docstring_parser``)."""
    args = "\n".join(f"    {name}: {text}" for name, text in parameter_descriptions().items())
    return f"{PIPELINE_SUMMARY}\n\nArgs:\n{args}\n"


def check_parameters(values: Mapping[str, object]) -> None:
    """Check pipeline parameter ``values`` (all of :data:`DEFAULTS`, as from the command line) the way the steps
    will, before anything is compiled or submitted.

    Checked: the split fractions (:func:`alpr.data.coco.check_fractions`), the leaf config (a file of
    ``configs/``), the training hyperparameters (:class:`alpr.model.training.Hyperparameters`) and scale
    (:class:`alpr.model.distributed.TrainScale`), the selection
    metric (one of :data:`alpr.model.metrics.METRIC_KEYS`, what Evaluate selects by), the deploy target (one of
    :data:`alpr.kubeflow.kserve.DEPLOY_TARGETS`, ``""`` meaning ``auto``), ``min_eir_improvement`` (a finite
    number >= 0), and the tuning options (:class:`alpr.tuning.options.TuningOptions`; checked whether or not
    ``tune`` is on, as the run form would take them).

    Raises:
        ParameterError: one or more values are wrong; its message names each field, the value and what is valid.
        KeyError: ``values`` lacks a parameter of :data:`DEFAULTS`.
    """
    from alpr.data.coco import check_fractions
    from alpr.kubeflow.kserve import DEPLOY_TARGETS
    from alpr.model.distributed import TrainScale
    from alpr.model.metrics import METRIC_KEYS
    from alpr.model.training import CONFIG_DIR, Hyperparameters
    from alpr.tuning.options import TuningOptions

    v = {name: values[name] for name in DEFAULTS}
    problems: list[str] = []
    if not str(v["annotation_version"]).strip():
        problems.append("annotation_version is empty (a tag of the dataset repository, e.g. annotations-v1)")
    try:
        check_fractions((v["train_fraction"], v["val_fraction"], v["test_fraction"]))
    except ValueError as exc:
        problems.append(f"train_fraction/val_fraction/test_fraction: {exc}")
    config = str(v["config"])
    if not (CONFIG_DIR / config).is_file():
        leaves = sorted(p.name for p in CONFIG_DIR.glob("*.py"))
        problems.append(f"config={config!r} is not a file of configs/ (one of {', '.join(leaves)})")
    hp_fields = [f for f in Hyperparameters.__dataclass_fields__ if f in v]
    try:
        Hyperparameters(**{f: v[f] for f in hp_fields})
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
    try:
        TrainScale(workers=v["train_workers"], gpus_per_worker=v["train_gpus_per_worker"])
    except ValueError as exc:
        problems.append(str(exc))
    if v["selection_metric"] not in METRIC_KEYS:
        problems.append(f"selection_metric={v['selection_metric']!r} (one of {', '.join(METRIC_KEYS)})")
    target = v["deploy_target"]
    if target not in DEPLOY_TARGETS and target != "":
        problems.append(f"deploy_target={target!r} (one of {', '.join(DEPLOY_TARGETS)}; empty: auto)")
    gain = v["min_eir_improvement"]
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain < 0:
        problems.append(f"min_eir_improvement={gain!r} (a number >= 0; 0: strictly higher EIR)")
    try:
        TuningOptions(
            name="check",
            algorithm=v["tune_algorithm"],
            max_trials=v["tune_max_trials"],
            parallel=v["tune_parallel"],
            max_failed=v["tune_max_failed"],
            timeout_s=v["tune_timeout"] or None,
            image="check",
        )
    except ValueError as exc:  # named by TuningOptions' fields: name the pipeline's parameters instead
        message = str(exc)
        for option, parameter in TUNING_OPTION_OF.items():
            message = message.replace(f"{option}=", f"{parameter}=")
        problems.append(message)
    if problems:
        raise ParameterError(problems)
