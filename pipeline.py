"""The ALPR training pipeline (KFP v2) and its command line.

    python pipeline.py --run                  # no cluster: kfp.local on the embedded defaults (./.alpr)
    python pipeline.py --compile -o alpr.yaml # KFP IR YAML, no cluster needed
    python pipeline.py --run --host URL       # submit to a Kubeflow Pipelines API server

Record → Train → Evaluate → Test → Deploy, each a KFP v2 component from ``components/``. Without ``--host``
the first run bootstraps a workspace (SQLite metadata, a storage folder, a bare dataset git repository with a local
DVC remote and a first annotation version of synthetic plates), then runs the pipeline with
``kfp.local.SubprocessRunner`` and prints the headline metrics, the Deploy decision and where the results are.
"""


import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from kfp import compiler, dsl

from components.deploy import deploy
from components.evaluate import evaluate
from components.record import record
from components.test import test
from components.train import train
from components.tune import tune as tune_step

from alpr import kfp_submit
from alpr.defaults import BOOTSTRAP_IMAGES, BOOTSTRAP_VERSION, TRAINING_DEFAULTS, bootstrap
from alpr.kfp_platform import apply_platform
from alpr.tuning import cli as tuning_cli

PIPELINE_NAME = "alpr-train"

#: Pipeline parameters and their defaults (the embedded defaults; each is also a command-line flag).
DEFAULTS: dict[str, object] = {
    **TRAINING_DEFAULTS,
    "deploy_target": "",  # Deploy: local | kubernetes; empty: $ALPR_DEPLOY_TARGET (default local)
    "min_eir_improvement": 0.0,  # Deploy: how much the test EIR must beat the served model's by
    **tuning_cli.TUNE_DEFAULTS,  # Tune (off by default): tune, tune_algorithm, tune_max_trials, tune_parallel, …
}


@dsl.pipeline(name=PIPELINE_NAME, description="ALPR: Record → Train (mmdetection) → Evaluate → Test → Deploy")
def alpr_pipeline(
    annotation_version: str = DEFAULTS["annotation_version"],
    train_fraction: float = DEFAULTS["train_fraction"],
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    split_seed: int = DEFAULTS["split_seed"],
    config: str = DEFAULTS["config"],
    lr: float = DEFAULTS["lr"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    input_size: int = DEFAULTS["input_size"],
    weight_decay: float = DEFAULTS["weight_decay"],
    val_interval: int = DEFAULTS["val_interval"],
    seed: int = DEFAULTS["seed"],
    selection_metric: str = DEFAULTS["selection_metric"],
    deploy_target: str = DEFAULTS["deploy_target"],
    min_eir_improvement: float = DEFAULTS["min_eir_improvement"],
    tune: bool = DEFAULTS["tune"],
    tune_algorithm: str = DEFAULTS["tune_algorithm"],
    tune_max_trials: int = DEFAULTS["tune_max_trials"],
    tune_parallel: int = DEFAULTS["tune_parallel"],
    tune_max_failed: int = DEFAULTS["tune_max_failed"],
    tune_timeout: int = DEFAULTS["tune_timeout"],
):
    """Annotation version → training version → trained, evaluated, selected and tested plate reader."""
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    rec = record(annotation_version=annotation_version, train_fraction=train_fraction, val_fraction=val_fraction,
                 test_fraction=test_fraction, split_seed=split_seed, run_name=run_name).set_display_name("Record")
    # Tune: a Katib Experiment (cluster) or the Optuna twin (local) when `tune` is on; its best parameters
    # (a JSON object, "" when off) override Train's.
    tu = tune_step(enabled=tune, dataset=rec.outputs["dataset"], run_name=run_name, config=config, epochs=epochs,
                   val_interval=val_interval, seed=seed, algorithm=tune_algorithm, max_trials=tune_max_trials,
                   parallel=tune_parallel, max_failed=tune_max_failed, timeout_s=tune_timeout) \
        .set_display_name("Tune")
    tr = train(dataset=rec.outputs["dataset"], run_name=run_name, config=config, lr=lr, epochs=epochs,
               batch_size=batch_size, input_size=input_size, weight_decay=weight_decay, val_interval=val_interval,
               seed=seed, hp_override=tu.outputs["Output"]).set_display_name("Train")
    ev = evaluate(dataset=rec.outputs["dataset"], candidates=tr.outputs["model"], run_name=run_name,
                  selection_metric=selection_metric).set_display_name("Evaluate")
    te = test(dataset=rec.outputs["dataset"], model=ev.outputs["selected_model"], run_name=run_name) \
        .set_display_name("Test")
    dep = deploy(model=ev.outputs["selected_model"], run_name=run_name, deploy_target=deploy_target,
                 min_eir_improvement=min_eir_improvement).set_display_name("Deploy").after(te)
    # Kubernetes needs of each task (secrets, PVC, resources, GPU, retries, caching); kfp.local ignores them.
    apply_platform(rec, "record")
    apply_platform(tu, "tune")
    apply_platform(tr, "train")
    apply_platform(ev, "evaluate")
    apply_platform(te, "test")
    apply_platform(dep, "deploy")


# ------------------------------------------------------------------------------------------------ CLI
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", action="store_true", help="run the pipeline (locally unless --host is given)")
    mode.add_argument("--compile", action="store_true", help="write the KFP IR YAML and exit")
    tuning_cli.add_arguments(p, mode)  # --katib, --tune-backend, --tune-name, …, --params-from-tuning
    p.add_argument("--output", "-o", type=Path, default=Path("alpr_pipeline.yaml"), help="--compile: output file")
    p.add_argument("--workspace", type=Path, default=None,
                   help="local workspace (env ALPR_WORKSPACE, default ./.alpr)")
    p.add_argument("--bootstrap-images", type=int, default=BOOTSTRAP_IMAGES,
                   help=f"synthetic images in the first annotation version (default {BOOTSTRAP_IMAGES})")
    params = p.add_argument_group("pipeline parameters")
    for name, default in DEFAULTS.items():
        if isinstance(default, bool):  # --tune / --no-tune
            params.add_argument(f"--{name.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction,
                                default=default, help=f"(default: {default})")
            continue
        params.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), default=default,
                            help=f"(default: {default})")
    kfp_submit.add_arguments(p)  # --host, --namespace, --experiment, --wait, --schedule, --kfp-config, --dex-user…
    return p.parse_args(argv)


def pipeline_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The pipeline's parameter values chosen on the command line."""
    return {name: getattr(args, name) for name in DEFAULTS}


def compile_pipeline(output: Path) -> Path:
    """Compile :func:`alpr_pipeline` to KFP IR YAML at ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=alpr_pipeline, package_path=str(output))
    return output


def run_local(args: argparse.Namespace) -> dict:
    """Bootstrap if needed and run the pipeline with kfp.local; return the summary printed to the user."""
    from kfp import local

    from alpr.settings import load_settings

    settings = load_settings(workspace=args.workspace)
    settings.export()  # the tasks run as subprocesses and read the same settings from the environment
    print(f"workspace: {settings.workspace}")
    if args.annotation_version == BOOTSTRAP_VERSION and bootstrap(settings, args.bootstrap_images):
        print(f"bootstrapped annotation version {BOOTSTRAP_VERSION} ({args.bootstrap_images} synthetic images)")
    pipeline_root = Path(settings.workspace) / "pipeline_root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    started = time.time()
    alpr_pipeline(**pipeline_arguments(args))
    return summarize(settings, pipeline_root, time.time() - started)


def summarize(settings, pipeline_root: Path, seconds: float) -> dict:
    """Headline metrics and locations of the newest run in the metadata store."""
    from alpr.metadata import MetadataStore

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
    :mod:`alpr.kfp_submit`). Returns the pipeline, version, experiment and run (or recurring run) ids and the run's
    URL; ``ok`` is False when the submission failed (``error`` says why) or a ``--wait``-ed run did not succeed.
    """
    try:
        options, platform = kfp_submit.options_from_args(args)
        return kfp_submit.submit(alpr_pipeline, pipeline_arguments(args), options, platform,
                                 source_dir=Path(__file__).resolve().parent)
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
    print(f"predict:        python -m alpr.predict --model latest IMAGE...")
    deployment = summary.get("deployment")
    if deployment:
        print(f"deploy:         {deployment['action']} at {deployment['target']}: {deployment['reason']}")
        if deployment["action"] == "deployed" and deployment["target"] == "local":
            from alpr.deploy import serve_commands

            print(f"serve:          {serve_commands(deployment['storage_uri'])[0]}")


def run_tuning(args: argparse.Namespace) -> int:
    """``--katib``: tune the hyperparameters (Katib on a cluster, the local Optuna twin otherwise, see
    :mod:`alpr.tuning.cli`), print the best trial and its parameters; return the exit code."""
    from alpr.settings import load_settings

    settings = load_settings(workspace=args.workspace)
    settings.export()  # the local twin's trials run as subprocesses and read the same settings

    def prepare_local() -> None:
        if args.annotation_version == BOOTSTRAP_VERSION and bootstrap(settings, args.bootstrap_images):
            print(f"bootstrapped annotation version {BOOTSTRAP_VERSION} ({args.bootstrap_images} synthetic images)")

    return tuning_cli.run(args, settings, prepare_local=prepare_local)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.compile:
        print(f"compiled {compile_pipeline(args.output)}")
        return 0
    if args.katib:
        return run_tuning(args)
    if args.params_from_tuning:
        from alpr.settings import load_settings

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
