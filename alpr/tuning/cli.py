"""The tuning part of ``pipeline.py``'s command line: ``--katib`` and ``--params-from-tuning``.

    python pipeline.py --katib [--tune-algorithm tpe --tune-max-trials 12 --tune-parallel 2 --tune-timeout 0]
    python pipeline.py --run --params-from-tuning latest      # train with the best parameters found

``--katib`` tunes the hyperparameters of :mod:`alpr.tuning.space` for the pipeline's selection metric on the
training version the pipeline would record (``--annotation-version`` and its split flags), with the pipeline's
``--epochs``, ``--val-interval``, ``--seed`` and ``--config`` for every trial. With a Kubernetes API configured
(in a pod, or a kubeconfig) it creates a Katib Experiment and follows it; without one (or ``--tune-backend local``)
it runs the local Optuna twin. It prints the best trial and its parameters and saves them to a JSON file; the
study and its trials are in the metadata store.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from alpr.metadata import MetadataStore
from alpr.tuning import katib
from alpr.tuning.options import FIXED_HYPERPARAMETERS, TuningOptions, default_study_name
from alpr.tuning.results import load_tuned_params, outcome_json
from alpr.tuning.run import TuningFailed, tune


def add_arguments(parser: argparse.ArgumentParser, mode: argparse._MutuallyExclusiveGroup) -> None:
    """Add ``--katib`` to the ``mode`` group and the tuning flags that are not pipeline parameters."""
    mode.add_argument(
        "--katib",
        action="store_true",
        help="tune the hyperparameters: a Katib Experiment on a cluster, the local Optuna twin "
        "without one; prints the best trial and its parameters",
    )
    group = parser.add_argument_group("tuning (--katib)")
    group.add_argument(
        "--tune-backend",
        choices=("auto", "katib", "local"),
        default="auto",
        help="auto: Katib when a Kubernetes API is configured (in a pod or a kubeconfig), else local",
    )
    group.add_argument("--tune-name", default=None, help="study / Experiment name (default alpr-tune-<UTC time>)")
    group.add_argument(
        "--tune-namespace",
        default=os.environ.get("ALPR_KATIB_NAMESPACE", "kubeflow"),
        help="namespace of the Katib Experiment (env ALPR_KATIB_NAMESPACE, default kubeflow)",
    )
    group.add_argument("--tune-gpus", type=int, default=0, help="GPUs per Katib trial (default 0)")
    group.add_argument(
        "--tune-trial-workers",
        type=int,
        default=1,
        help="pods per Katib trial; above 1 each trial is a Kubeflow Trainer TrainJob, data-parallel (default 1)",
    )
    group.add_argument(
        "--tune-gpus-per-worker",
        type=int,
        default=0,
        help="GPUs of each pod of a Katib trial, one process each; above 1 a trial is a TrainJob (default 0: "
        "--tune-gpus)",
    )
    group.add_argument("--tune-poll", type=float, default=15.0, help="seconds between polls of the Experiment")
    group.add_argument(
        "--tune-output",
        type=Path,
        default=None,
        help="where to save the best parameters (default <workspace>/tuning/<study>.json)",
    )
    group.add_argument(
        "--params-from-tuning",
        metavar="REF",
        default=None,
        help="train with tuned hyperparameters: 'latest', a study name, or a JSON file (overrides "
        "the hyperparameter flags)",
    )


def apply_tuned_params(args: argparse.Namespace, settings=None) -> dict:
    """With ``--params-from-tuning``, set the tuned hyperparameters on ``args``; return them (``{}`` without).

    Raises:
        LookupError: no such study / no best trial.
        ValueError: a malformed file, or a tuned parameter that is not a pipeline parameter.
    """
    if not getattr(args, "params_from_tuning", None):
        return {}

    store = MetadataStore(settings.db_url) if settings is not None else None
    if store is not None:
        store.create_schema()
    params = load_tuned_params(args.params_from_tuning, store)
    missing = sorted(k for k in params if not hasattr(args, k))
    if missing:
        raise ValueError(f"tuned parameters {', '.join(missing)} are not pipeline parameters")
    for key, value in params.items():
        setattr(args, key, value)
    return params


def options_from_args(args: argparse.Namespace):
    """The :class:`~alpr.tuning.options.TuningOptions` of the command line."""

    return TuningOptions(
        name=args.tune_name or default_study_name(),
        namespace=args.tune_namespace,
        data=args.annotation_version,
        split_fractions=(args.train_fraction, args.val_fraction, args.test_fraction),
        split_seed=args.split_seed,
        algorithm=args.tune_algorithm,
        max_trials=args.tune_max_trials,
        parallel=args.tune_parallel,
        max_failed=args.tune_max_failed,
        timeout_s=args.tune_timeout or None,
        config=args.config,
        fixed={k: getattr(args, k) for k in FIXED_HYPERPARAMETERS},
        gpus=args.tune_gpus,
        trial_workers=args.tune_trial_workers,
        trial_gpus_per_worker=args.tune_gpus_per_worker,
    )


def run(args: argparse.Namespace, settings, *, prepare_local: Callable[[], None] | None = None) -> int:
    """``--katib``: run the study, print the best trial and its parameters, save them; return the exit status.

    Args:
        args: the parsed command line.
        settings: the backends (:class:`alpr.settings.Settings`).
        prepare_local: called before a local study (e.g. bootstrapping the workspace's first annotation version).
    """

    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    backend = args.tune_backend
    if backend == "auto":
        backend = "katib" if katib.cluster_available() else "local"
    if backend == "local" and prepare_local is not None:
        prepare_local()
    print(
        f"tuning study {options.name}: {'Katib Experiment' if backend == 'katib' else 'local Optuna twin'}, "
        f"{options.algorithm}, {options.max_trials} trials ({options.parallel} at once), objective "
        f"{options.objective}"
    )
    extra = {"poll_s": args.tune_poll} if backend == "katib" else {}
    try:
        outcome = tune(settings, options, backend=backend, **extra)
    except (TuningFailed, katib.KatibError) as exc:
        print(f"error: {exc}")
        return 1
    summary = outcome_json(outcome)
    out = args.tune_output or Path(settings.workspace) / "tuning" / f"{outcome.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in outcome.best_metrics.items() if v is not None)
    print(f"\n=== ALPR tuning finished ({outcome.backend}, {outcome.status}) ===")
    print(f"study:          {outcome.name}  ({len(outcome.trials)} trials; {outcome.message})")
    print(f"best trial:     {outcome.best_trial}  {metrics}")
    print(f"parameters:     {json.dumps(outcome.best_params, sort_keys=True)}")
    print(f"saved:          {out}")
    print(f"train with:     python pipeline.py --run --params-from-tuning {outcome.name}")
    return 0
