"""The tuning trial entry point: train one hyperparameter configuration and report its metrics.

    python -m alpr.tuning.trial --data annotations-v1 --epochs 16 --val-interval 4 \\
        --lr 0.004 --weight-decay 0.05 --input-size 320 --batch-size 8

Katib runs it in each trial's Job (with ``${trialParameters.…}`` filled in; under ``torchrun`` in each node of a
distributed trial's ``TrainJob``, where it trains data-parallel, :func:`alpr.model.distributed.scale_config`, and only
rank 0 prints), the local twin runs it as a
subprocess. It trains with the pipeline's own code (:func:`alpr.model.training.build_config` +
:func:`alpr.model.training.train`, the config's validation with EIR and COCO mAP), adds
:class:`alpr.tuning.hook.TrialMetricsHook`, which prints ``eir``, ``mAP`` and ``loss`` after every validation in
the collector format (:mod:`alpr.tuning.collector`), and ends with one ``final metrics: {json}`` line.

Every :class:`alpr.model.training.Hyperparameters` field is a flag (``--input-size`` for ``input_size``). Numbers are
read leniently, as a suggestion service may write them: an integer flag takes ``320`` and ``320.0`` (not
``320.5``); a float flag takes any finite spelling (``0.001``, ``1e-03``). The values are then checked by
``Hyperparameters`` itself (e.g. the input size must be a multiple of 32): a bad value exits with status 2 and a
message naming the flag. Training data (``--data``): see :func:`alpr.tuning.data.resolve_training_data`.

Exit status: 0 trained; 1 the data could not be resolved or training failed (message on stderr); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from alpr import logs, spec
from alpr.data.repo import DatasetRepoError
from alpr.defaults import TRAINING_DEFAULTS
from alpr.model.distributed import TrainScale, init_process_group, is_rank_zero, scale_config, under_torchrun
from alpr.model.metrics import short_metrics
from alpr.model.training import DEFAULT_CONFIG, Hyperparameters, build_config, train
from alpr.settings import load_settings
from alpr.tuning.data import resolve_training_data
from alpr.tuning.space import katib_number

log = logging.getLogger(__name__)

#: Prefix of the last line a trial prints (JSON of the final metrics; no ``name=value`` pairs for the collector).
FINAL_PREFIX = "final metrics: "


def _float_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _int_value(text: str) -> int:
    value = _float_value(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _bool_value(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean (true/false): {text!r}")


_READERS = {
    "float": _float_value,
    "int": _int_value,
    "bool": _bool_value,
    "str": str,
    float: _float_value,
    int: _int_value,
    bool: _bool_value,
    str: str,
}


def flag(name: str) -> str:
    """The command-line flag of hyperparameter ``name`` (``input_size`` → ``--input-size``)."""
    return "--" + name.replace("_", "-")


def trial_argv(space, options, values: dict[str, str], *, data: str | None = None) -> list[str]:
    """The entry point's arguments for one trial: data, config, fixed hyperparameters, then the searched ones.

    Args:
        space: the :class:`~alpr.tuning.space.SearchSpace`.
        options: the study's :class:`~alpr.tuning.options.TuningOptions` (``data``, ``config``, ``fixed``,
            ``num_workers``, ``split_fractions``, ``split_seed``).
        values: ``{parameter: value as a string}`` for every searched parameter (Katib: its
            ``${trialParameters.…}`` placeholder).
        data: the ``--data`` value instead of ``options.data`` (the local twin passes the resolved folder).

    Raises:
        ValueError: a fixed hyperparameter is also searched or is not a Hyperparameters field; a searched
            parameter has no value.
    """

    fields = {f.name for f in dataclasses.fields(Hyperparameters)}
    clash = sorted(set(options.fixed) & set(space.names))
    unknown = sorted(set(options.fixed) - fields)
    missing = [n for n in space.names if n not in values]
    problems = [f"fixed {', '.join(clash)} also searched"] if clash else []
    problems += [f"fixed {', '.join(unknown)} not Hyperparameters fields"] if unknown else []
    problems += [f"no value for {', '.join(missing)}"] if missing else []
    if problems:
        raise ValueError("trial arguments: " + "; ".join(problems))
    args = [
        f"--data={data or options.data}",
        f"--config={options.config}",
        f"--num-workers={options.num_workers}",
        "--split-fractions",
        *(katib_number(f) for f in options.split_fractions),
        f"--split-seed={options.split_seed}",
    ]
    args += [
        f"{flag(k)}={katib_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v}"
        for k, v in sorted(options.fixed.items())
    ]
    args += [f"{flag(name)}={values[name]}" for name in space.names]
    return args


def build_parser() -> argparse.ArgumentParser:
    """The entry point's parser; one flag per :class:`Hyperparameters` field, typed by the field.

    Raises:
        TypeError: a Hyperparameters field has a type the parser cannot read (not float/int/bool/str).
    """
    p = argparse.ArgumentParser(
        prog="python -m alpr.tuning.trial",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        help="training data: a training-version folder, a training version or an annotation version",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"leaf config in configs/ (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--work-dir", type=Path, default=None, help="mmengine work dir (default: <cache>/tuning/trials/<unique>)"
    )
    p.add_argument("--num-workers", type=_int_value, default=1, help="dataloader worker processes (default 1)")
    fractions = TRAINING_DEFAULTS.split_fractions
    p.add_argument(
        "--split-fractions",
        type=_float_value,
        nargs=3,
        default=fractions,
        metavar=tuple(s.upper() for s in spec.SPLITS),
        help=f"split of an annotation version (default {' '.join(map(str, fractions))})",
    )
    p.add_argument(
        "--split-seed",
        type=_int_value,
        default=TRAINING_DEFAULTS.split_seed,
        help=f"split seed of an annotation version (default {TRAINING_DEFAULTS.split_seed})",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the trial's checkpoints (default: delete them after training; the config and logs stay)",
    )
    group = p.add_argument_group("hyperparameters (alpr.model.training.Hyperparameters)")
    for f in dataclasses.fields(Hyperparameters):
        reader = _READERS.get(f.type)
        if reader is None:
            raise TypeError(f"Hyperparameters.{f.name}: type {f.type!r} has no command-line reader")
        group.add_argument(flag(f.name), dest=f.name, type=reader, default=f.default, help=f"(default: {f.default})")
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Hyperparameters]:
    """Parse and validate ``argv``; return the namespace and the :class:`Hyperparameters`.

    Exits with status 2 (argparse) on a bad value, naming the flag.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Hyperparameters)}
    try:
        hp = Hyperparameters(**values)
    except ValueError as exc:
        bad = [f.name for f in dataclasses.fields(Hyperparameters) if f"{f.name}=" in str(exc)]
        parser.error(f"{', '.join(flag(n) for n in bad) or 'hyperparameters'}: {exc}")
    return args, hp


def run_trial(
    settings,
    data: str,
    hp: Hyperparameters,
    *,
    work_dir: Path,
    config: str = DEFAULT_CONFIG,
    num_workers: int = 1,
    split_fractions: tuple[float, float, float] = TRAINING_DEFAULTS.split_fractions,
    split_seed: int = TRAINING_DEFAULTS.split_seed,
    keep_checkpoints: bool = False,
) -> dict:
    """Train ``hp`` on ``data`` with the pipeline's training code, printing metric lines after every validation.

    Args:
        settings: backends (to resolve a version name).
        data: training data reference (:func:`alpr.tuning.data.resolve_training_data`).
        hp: the hyperparameters.
        work_dir: the trial's folder (``train/``: mmengine work dir; ``data/``: a fetched version).
        config: leaf config in ``configs/``.
        num_workers: dataloader workers.
        split_fractions: split of an annotation version.
        split_seed: split seed of an annotation version.
        keep_checkpoints: keep the ``*.pth`` files (else deleted after training).

    Returns:
        ``{"metrics": {eir, plate_precision, char_accuracy, mAP, mAP_50} of the last validation,
        "training_version": name or None, "config_hash", "work_dir"}``.
    """
    from alpr.tuning import hook  # noqa: F401  (mmdet-dependent: registers TrialMetricsHook named by the config)

    work_dir = Path(work_dir)
    # Under torchrun (a distributed trial) each rank fetches its own copy: no two processes write one folder.
    data_dir = work_dir / (f"data-rank{os.environ['RANK']}" if under_torchrun() else "data")
    data_root, version = resolve_training_data(
        settings, data, data_dir, fractions=split_fractions, split_seed=split_seed
    )
    cfg = build_config(data_root, work_dir / "train", hp, config=config, num_workers=num_workers)
    scale_config(cfg, TrainScale.from_environment())
    if under_torchrun():
        init_process_group(cfg.env_cfg.dist_cfg.backend)
    imports = list((cfg.get("custom_imports") or {}).get("imports", []))
    cfg.custom_imports = dict(imports=[*imports, "alpr.tuning.hook"], allow_failed_imports=False)
    cfg.custom_hooks = [*(cfg.get("custom_hooks") or []), dict(type="TrialMetricsHook")]
    result = train(cfg, resume=False)
    if not keep_checkpoints:
        for ckpt in result.checkpoints:
            ckpt.unlink(missing_ok=True)
        (result.work_dir / "last_checkpoint").unlink(missing_ok=True)
    return {
        "metrics": short_metrics(result.val_metrics),
        "training_version": version,
        "config_hash": result.config_hash,
        "work_dir": str(work_dir),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args, hp = parse_args(argv)
    logs.setup()

    settings = load_settings()
    # The ranks of a distributed trial share one work dir: torchrun gives them one run id.
    trial_id = (
        os.environ["TORCHELASTIC_RUN_ID"]
        if under_torchrun() and os.environ.get("TORCHELASTIC_RUN_ID")
        else f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    )
    work_dir = args.work_dir or Path(settings.cache_dir) / "tuning" / "trials" / trial_id
    log.info("trial %s in %s", dataclasses.asdict(hp), work_dir)
    try:
        out = run_trial(
            settings,
            args.data,
            hp,
            work_dir=work_dir,
            config=args.config,
            num_workers=args.num_workers,
            split_fractions=tuple(args.split_fractions),
            split_seed=args.split_seed,
            keep_checkpoints=args.keep_checkpoints,
        )
    except (FileNotFoundError, LookupError, DatasetRepoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not is_rank_zero():  # one final line per trial: rank 0's (every rank has the same metrics)
        return 0
    finals = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out["metrics"].items()}
    print(FINAL_PREFIX + json.dumps(finals, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
