"""Run the pipeline: locally with ``kfp.local``, on a Kubeflow Pipelines API server, or tune it.

    python pipeline.py --run                  # = alpr run: kfp.local on the embedded defaults (./.alpr)
    python pipeline.py --compile -o alpr.yaml # = alpr compile -o alpr.yaml: KFP IR YAML, no cluster needed
    python pipeline.py --run --host URL       # = alpr run --host URL: submit to a Kubeflow Pipelines API server
    python pipeline.py --katib                # = alpr tune: Katib Experiment on a cluster, else the Optuna twin

Without ``--host`` the first run bootstraps a workspace (SQLite metadata, a storage folder, a bare dataset git
repository with a local DVC remote and a first annotation version of synthetic plates), then runs the pipeline
with ``kfp.local.SubprocessRunner`` and prints the headline metrics, the Deploy decision and where the results are.

The parameter values are checked (:func:`pipelines.parameters.check_parameters`) when the command line is read:
a wrong value ends the command with exit code 2 and a message naming it, before anything is compiled, submitted
or run. A local run is named ``alpr-train-<UTC time>``; its tasks learn the name from ``ALPR_RUN_NAME``; when
``kfp.local`` is done, the run's status is set as the cluster's exit handler would (kfp.local has none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from alpr import logs, storage
from alpr.data.bootstrap import bootstrap
from alpr.defaults import BOOTSTRAP_CONDITIONS, BOOTSTRAP_IMAGES, BOOTSTRAP_VERSION
from alpr.kubeflow import local_runner
from alpr.kubeflow import submit as kfp_submit
from alpr.kubeflow.platform import RUN_NAME_ENV
from alpr.metadata import MetadataStore
from alpr.settings import Settings, load_settings
from alpr.steps.deploy import serve_commands
from alpr.steps.runs import RunOutcome, ensure_run, finish_run_step
from alpr.tuning import cli as tuning_cli
from pipelines.alpr_train import PIPELINE_NAME, alpr_pipeline, compile_pipeline, local_pipeline
from pipelines.parameters import DEFAULTS, ParameterError, check_parameters, parameter_descriptions

#: The modes of ``python pipeline.py`` (one flag each) and the ``alpr`` sub-command of each.
MODES: Final[dict[str, str]] = {"run": "run", "compile": "compile", "katib": "tune"}
#: The checkout holding this package: its git revision names the pipeline versions uploaded to KFP.
SOURCE_DIR: Final = Path(__file__).resolve().parent.parent

__all__ = [
    "BOOTSTRAP_VERSION",
    "DEFAULTS",
    "LocalRunFailed",
    "alpr_pipeline",
    "compile_pipeline",
    "local_run_name",
    "main",
    "pipeline_arguments",
]


class LocalRunFailed(RuntimeError):
    """A local (``kfp.local``) run ended in failure; ``outcome`` is what was recorded for it."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(f"run {outcome.run_name} {outcome.status}: {outcome.message}")
        self.outcome = outcome


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
        help="the synthesizer's conditions preset for the first annotation version: classic (large frontal plates), "
        "road (small, angled, dark plates; docs/detection_design.md), or presets joined by + sharing the images "
        f"evenly (classic+road) (default {BOOTSTRAP_CONDITIONS})",
    )
    params = p.add_argument_group("pipeline parameters")
    descriptions = parameter_descriptions()  # the ones the compiled pipeline carries too
    for name, default in DEFAULTS.items():
        flag = f"--{name.replace('_', '-')}"
        text = f"{descriptions[name]} (default: {default!r})".replace("%", "%%")
        if isinstance(default, bool):  # --tune / --no-tune
            params.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            params.add_argument(flag, dest=name, type=type(default), default=default, help=text)
    kfp_submit.add_arguments(p)  # --host, --namespace, --experiment, --wait, --schedule, --kfp-config, --dex-user…
    if mode is not None:
        p.set_defaults(run=mode == "run", compile=mode == "compile", katib=mode == "katib")
    return p


def _parse_args(argv: list[str] | None, mode: str | None = None) -> argparse.Namespace:
    """Parse ``argv`` and check the pipeline parameter values (:func:`check_parameters`); a wrong value is a
    usage error (``SystemExit(2)``, the message names each field and its valid values)."""
    parser = build_parser(mode)
    args = parser.parse_args(argv)
    try:
        check_parameters(pipeline_arguments(args))
    except ParameterError as exc:
        parser.error(str(exc))
    return args


def pipeline_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The pipeline's parameter values chosen on the command line."""
    return {name: getattr(args, name) for name in DEFAULTS}


def local_run_name() -> str:
    """A new local run's name: ``alpr-train-<UTC yyyymmdd-hhmmss>-<6 hex digits>`` (unique, readable)."""
    return f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def run_name_env(run_name: str) -> Iterator[str]:
    """Set ``ALPR_RUN_NAME`` to ``run_name`` while a local run's tasks start (the SubprocessRunner's tasks
    inherit this process's environment; the DockerRunner's get it from :func:`alpr.kubeflow.local_runner
    .task_environment`), then restore the previous value."""
    before = os.environ.get(RUN_NAME_ENV)
    os.environ[RUN_NAME_ENV] = run_name
    try:
        yield run_name
    finally:
        if before is None:
            os.environ.pop(RUN_NAME_ENV, None)
        else:
            os.environ[RUN_NAME_ENV] = before


def run_local(args: argparse.Namespace) -> dict:
    """Bootstrap if needed and run the pipeline with kfp.local (:func:`execute_local`); return the summary printed
    to the user.

    Raises:
        LocalRunFailed: a task failed.
    """
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
    return execute_local(settings, pipeline_arguments(args), Path(settings.workspace) / "pipeline_root")


def execute_local(
    settings: Settings, values: dict[str, object], pipeline_root: Path, runner: str | None = None
) -> dict:
    """Run :func:`~pipelines.alpr_train.local_pipeline` with ``values`` under kfp.local; return :func:`summarize`.

    The run (:func:`local_run_name`, in ``ALPR_RUN_NAME`` while it runs) is recorded with every parameter before
    its tasks start, and finished by :func:`alpr.steps.runs.finish_run_step` when kfp.local returns (succeeded)
    or raises (failed, with the error): the bookkeeping of the cluster's exit handler, which kfp.local cannot run.

    Args:
        settings: the backends (exported to the environment by the caller).
        values: every pipeline parameter (:func:`pipeline_arguments`).
        pipeline_root: kfp.local's output folder.
        runner: ``subprocess`` or ``docker`` (default ``$ALPR_LOCAL_RUNNER``, see
            :func:`alpr.kubeflow.local_runner.make_runner`).

    Raises:
        LocalRunFailed: a task failed (the run is recorded ``failed``; the task's error is the cause).
    """
    from kfp import local

    with run_name_env(local_run_name()) as run_name:
        print(f"run: {run_name}")
        ensure_run(settings, run_name, values, host="local")
        # docker: every task in the components image (docs/containers.md), made here to pass ALPR_RUN_NAME on.
        runner_ = local_runner.make_runner(settings, runner)
        local.init(runner=runner_, pipeline_root=str(pipeline_root), raise_on_error=True)
        started = time.time()
        try:
            local_pipeline(tune=bool(values["tune"]))(**values)
        except BaseException as exc:
            try:
                outcome = finish_run_step(settings, run_name=run_name, state="FAILED", message=f"{exc}")
            except Exception as store_error:  # the task's error matters more than this bookkeeping
                print(f"could not record run {run_name} failed: {store_error}", file=sys.stderr)
                outcome = RunOutcome(run_name=run_name, status="failed", state="FAILED", message=f"{exc}")
            if isinstance(exc, Exception):
                raise LocalRunFailed(outcome) from exc
            raise
        finish_run_step(settings, run_name=run_name, state="SUCCEEDED")
    return summarize(settings, time.time() - started, run_name=run_name)


def summarize(settings: Settings, seconds: float, run_name: str | None = None) -> dict:
    """Headline metrics and locations of the newest selected model in the metadata store.

    Args:
        run_name: the run just finished (default: the run that selected the model).

    Returns:
        ``run``, ``status`` (the run's recorded status), ``seconds``, ``val`` / ``test`` metrics of the selected
        model, ``model_uri``, ``report`` (the HTML report's path in storage, ``runs/<run>/report/index.html``, or
        None), ``tensorboard`` (a command), ``metadata`` (the store's URL without password) and ``deployment``
        (the Deploy decision's row, or None).
    """
    store = MetadataStore(settings.db_url)
    model = store.latest_selected_model()
    evaluations = store.evaluations(model["id"]) if model else []
    by_split = {e["split"]: e["metrics"] for e in evaluations}
    run = run_name or (model["run"] if model else None)
    recorded = store.get_run(run) if run else None
    # The report Test published to storage (a path when storage is a local folder, else a URI).
    report = storage.open_storage(settings.storage_uri).join("runs", run, "report", "index.html") if run else None
    if report is not None and "://" not in report and not Path(report).is_file():
        report = None
    decisions = [d for d in store.deployments() if model and d["model_id"] == model["id"]]
    return {
        "run": run,
        "status": recorded["status"] if recorded else None,
        "seconds": round(seconds, 1),
        "val": by_split.get("val", {}),
        "test": by_split.get("test", {}),
        "model_uri": model["uri"] if model else None,
        "report": report,
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
    print(f"run:            {summary['run']}  {summary.get('status')} ({summary['seconds']} s)")
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
    ``compile``, ``katib``); returns the exit code (0: done; 1: a local run, a cluster submission or a tuning study
    failed). A wrong parameter value exits with code 2 (``SystemExit``) before anything runs."""
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
    try:
        _print_summary(run_local(args))
    except LocalRunFailed as exc:
        print(f"ALPR pipeline failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
