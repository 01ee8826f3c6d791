"""Run the pipeline: locally with ``kfp.local``, on a Kubeflow Pipelines API server, or tune it.

    python pipeline.py --run                  # = alpr run: kfp.local on the embedded defaults (./.alpr)
    python pipeline.py --compile -o alpr.yaml # = alpr compile -o alpr.yaml: KFP IR YAML, no cluster needed
    python pipeline.py --run --host URL       # = alpr run --host URL: submit to a Kubeflow Pipelines API server
    python pipeline.py --katib                # = alpr tune: Katib Experiment on a cluster, else the Optuna twin

Without ``--host`` the first run bootstraps a workspace (SQLite metadata, a storage folder, a bare dataset git
repository with a local DVC remote and a first annotation version of synthetic plates), then runs the pipeline
with ``kfp.local.SubprocessRunner`` and prints the headline metrics, the Deploy decision and where the results are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Final

from alpr import logs
from alpr.data.bootstrap import bootstrap
from alpr.defaults import BOOTSTRAP_CONDITIONS, BOOTSTRAP_IMAGES, BOOTSTRAP_VERSION
from alpr.kubeflow import local_runner
from alpr.kubeflow import submit as kfp_submit
from alpr.metadata import MetadataStore
from alpr.settings import Settings, load_settings
from alpr.steps.deploy import serve_commands
from alpr.tuning import cli as tuning_cli
from pipelines.alpr_train import DEFAULTS, alpr_pipeline, compile_pipeline

#: The modes of ``python pipeline.py`` (one flag each) and the ``alpr`` sub-command of each.
MODES: Final[dict[str, str]] = {"run": "run", "compile": "compile", "katib": "tune"}
#: The checkout holding this package: its git revision names the pipeline versions uploaded to KFP.
SOURCE_DIR: Final = Path(__file__).resolve().parent.parent

__all__ = ["BOOTSTRAP_VERSION", "DEFAULTS", "alpr_pipeline", "compile_pipeline", "main", "pipeline_arguments"]


def build_parser(mode: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python pipeline.py`` (``mode`` None: one of ``--run/--compile/--katib`` is required) or of
    the ``alpr`` sub-command for ``mode`` (``run``, ``compile`` or ``katib``; the mode flag is implied)."""
    prog = None if mode is None else f"alpr {MODES[mode]}"
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    group = p.add_mutually_exclusive_group(required=mode is None)
    if mode is None:
        group.add_argument("--run", action="store_true", help="run the pipeline (locally unless --host is given)")
        group.add_argument("--compile", action="store_true", help="write the KFP IR YAML and exit")
    tuning_cli.add_arguments(p, group)  # --katib, --tune-backend, --tune-name, …, --params-from-tuning
    p.add_argument("--output", "-o", type=Path, default=Path("alpr_pipeline.yaml"), help="--compile: output file")
    p.add_argument("--workspace", type=Path, default=None, help="local workspace (env ALPR_WORKSPACE, default ./.alpr)")
    p.add_argument(
        "--bootstrap-images",
        type=int,
        default=BOOTSTRAP_IMAGES,
        help=f"synthetic images in the first annotation version (default {BOOTSTRAP_IMAGES})",
    )
    p.add_argument(
        "--bootstrap-conditions",
        default=BOOTSTRAP_CONDITIONS,
        help="the synthesizer's conditions preset for the first annotation version: classic (large frontal plates) "
        f"or road (small, angled, dark plates; docs/detection_design.md) (default {BOOTSTRAP_CONDITIONS})",
    )
    params = p.add_argument_group("pipeline parameters")
    for name, default in DEFAULTS.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(default, bool):  # --tune / --no-tune
            params.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=f"(default: {default})"
            )
        else:
            params.add_argument(flag, dest=name, type=type(default), default=default, help=f"(default: {default})")
    kfp_submit.add_arguments(p)  # --host, --namespace, --experiment, --wait, --schedule, --kfp-config, --dex-user…
    if mode is not None:
        p.set_defaults(run=mode == "run", compile=mode == "compile", katib=mode == "katib")
    return p


def _parse_args(argv: list[str] | None, mode: str | None = None) -> argparse.Namespace:
    return build_parser(mode).parse_args(argv)


def pipeline_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The pipeline's parameter values chosen on the command line."""
    return {name: getattr(args, name) for name in DEFAULTS}


def run_local(args: argparse.Namespace) -> dict:
    """Bootstrap if needed and run the pipeline with kfp.local; return the summary printed to the user."""
    from kfp import local

    settings = load_settings(workspace=args.workspace)
    settings.export()  # the tasks run as subprocesses and read the same settings from the environment
    print(f"workspace: {settings.workspace}")
    if args.annotation_version == BOOTSTRAP_VERSION and bootstrap(
        settings, args.bootstrap_images, conditions=args.bootstrap_conditions
    ):
        print(
            f"bootstrapped annotation version {BOOTSTRAP_VERSION} "
            f"({args.bootstrap_images} synthetic images, {args.bootstrap_conditions})"
        )
    pipeline_root = Path(settings.workspace) / "pipeline_root"
    # ALPR_LOCAL_RUNNER=docker: every task in the components image (docs/containers.md); default: this environment.
    local.init(runner=local_runner.make_runner(settings), pipeline_root=str(pipeline_root), raise_on_error=True)
    started = time.time()
    alpr_pipeline(**pipeline_arguments(args))
    return summarize(settings, pipeline_root, time.time() - started)


def summarize(settings: Settings, pipeline_root: Path, seconds: float) -> dict:
    """Headline metrics and locations of the newest run in the metadata store.

    Returns:
        ``run``, ``seconds``, ``val`` / ``test`` metrics of the selected model, ``model_uri``, ``report`` (the HTML
        report's path, or None), ``tensorboard`` (a command), ``metadata`` (the store's URL without password) and
        ``deployment`` (the Deploy decision's row, or None).
    """
    store = MetadataStore(settings.db_url)
    model = store.latest_selected_model()
    evaluations = store.evaluations(model["id"]) if model else []
    by_split = {e["split"]: e["metrics"] for e in evaluations}
    run = model["run"] if model else None
    report = pipeline_root / run / "test" / "report_files" / "index.html" if run else None
    decisions = [d for d in store.deployments() if model and d["model_id"] == model["id"]]
    return {
        "run": run,
        "seconds": round(seconds, 1),
        "val": by_split.get("val", {}),
        "test": by_split.get("test", {}),
        "model_uri": model["uri"] if model else None,
        "report": str(report) if report is not None and report.is_file() else None,
        "tensorboard": f"tensorboard --logdir {settings.storage_uri}/tensorboard",
        "metadata": store.url_for_display,
        "deployment": decisions[-1] if decisions else None,
    }


def run_cluster(args: argparse.Namespace) -> dict:
    """Compile, upload (pipeline or new version) and run -- or schedule -- on a KFP API server.

    Options: the cluster flags, ``ALPR_KFP_*`` / ``ALPR_K8S_*`` variables and ``--kfp-config`` (see
    :mod:`alpr.kubeflow.submit`). Returns the pipeline, version, experiment and run (or recurring run) ids and the
    run's URL; ``ok`` is False when the submission failed (``error`` says why) or a ``--wait``-ed run did not succeed.
    """
    try:
        options, platform = kfp_submit.options_from_args(args)
        return kfp_submit.submit(alpr_pipeline, pipeline_arguments(args), options, platform, source_dir=SOURCE_DIR)
    except kfp_submit.SubmitError as exc:
        return {"ok": False, "error": str(exc)}


def _print_summary(summary: dict) -> None:
    def fmt(metrics: dict) -> str:
        return ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))

    print("\n=== ALPR pipeline finished ===")
    print(f"run:            {summary['run']}  ({summary['seconds']} s)")
    print(f"val  (select):  {fmt(summary['val'])}")
    print(f"test (report):  {fmt(summary['test'])}")
    print(f"selected model: {summary['model_uri']}")
    print(f"test report:    {summary['report']}")
    print(f"TensorBoard:    {summary['tensorboard']}")
    print(f"metadata:       {summary['metadata']}")
    print("predict:        alpr predict --model latest IMAGE...")
    deployment = summary.get("deployment")
    if deployment:
        print(f"deploy:         {deployment['action']} at {deployment['target']}: {deployment['reason']}")
        if deployment["action"] == "deployed" and deployment["target"] == "local":
            print(f"serve:          {serve_commands(deployment['storage_uri'])[0]}")


def run_tuning(args: argparse.Namespace) -> int:
    """``--katib``: tune the hyperparameters (Katib on a cluster, the local Optuna twin otherwise, see
    :mod:`alpr.tuning.cli`), print the best trial and its parameters; return the exit code."""
    settings = load_settings(workspace=args.workspace)
    settings.export()  # the local twin's trials run as subprocesses and read the same settings

    def prepare_local() -> None:
        if args.annotation_version == BOOTSTRAP_VERSION and bootstrap(
            settings, args.bootstrap_images, conditions=args.bootstrap_conditions
        ):
            print(
                f"bootstrapped annotation version {BOOTSTRAP_VERSION} "
                f"({args.bootstrap_images} synthetic images, {args.bootstrap_conditions})"
            )

    return tuning_cli.run(args, settings, prepare_local=prepare_local)


def main(argv: list[str] | None = None, *, mode: str | None = None) -> int:
    """Entry point of ``python pipeline.py`` (``mode`` None) and of ``alpr run|compile|tune`` (``mode`` ``run``,
    ``compile``, ``katib``); returns the exit code (0: done; 1: a cluster submission or a tuning study failed)."""
    args = _parse_args(argv, mode)
    logs.setup()
    if args.compile:
        print(f"compiled {compile_pipeline(args.output)}")
        return 0
    if args.katib:
        return run_tuning(args)
    if args.params_from_tuning:
        tuned = tuning_cli.apply_tuned_params(args, load_settings(workspace=args.workspace))
        print(f"hyperparameters from tuning {args.params_from_tuning}: {json.dumps(tuned, sort_keys=True)}")
    if kfp_submit.cluster_requested(args):
        result = run_cluster(args)
        print(json.dumps(result, indent=2))
        return 0 if result.get("ok") else 1
    _print_summary(run_local(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
