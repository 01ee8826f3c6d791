"""The ALPR training pipeline (KFP v2) and its command line.

    python pipeline.py --run                  # no cluster: kfp.local on the embedded defaults (./.alpr)
    python pipeline.py --compile -o alpr.yaml # KFP IR YAML, no cluster needed
    python pipeline.py --run --host URL       # submit to a Kubeflow Pipelines API server

Record → Train → Evaluate → Test, each a KFP v2 component from ``components/``. Without ``--host`` the first run
bootstraps a workspace (SQLite metadata, a storage folder, a bare dataset git repository with a local DVC remote
and a first annotation version of synthetic plates), then runs the pipeline with ``kfp.local.SubprocessRunner``
and prints the headline metrics and where the results are.
"""


import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from kfp import compiler, dsl

from components.evaluate import evaluate
from components.record import record
from components.test import test
from components.train import train

PIPELINE_NAME = "alpr-train"
#: Annotation version created by the first local run (synthetic plates).
BOOTSTRAP_VERSION = "annotations-v1"

#: Pipeline parameters and their defaults (the embedded defaults; each is also a command-line flag).
DEFAULTS: dict[str, object] = {
    "annotation_version": BOOTSTRAP_VERSION,
    "train_fraction": 0.8,
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "split_seed": 0,
    "config": "rtmdet_tiny_alpr.py",
    "lr": 0.004,
    "epochs": 40,
    "batch_size": 8,
    "input_size": 320,
    "weight_decay": 0.05,
    "val_interval": 10,
    "seed": 0,
    "selection_metric": "eir",
}
#: Synthetic images in the bootstrap annotation version.
BOOTSTRAP_IMAGES = 600


@dsl.pipeline(name=PIPELINE_NAME, description="ALPR: Record → Train (mmdetection) → Evaluate → Test")
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
):
    """Annotation version → training version → trained, evaluated, selected and tested plate reader."""
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    rec = record(annotation_version=annotation_version, train_fraction=train_fraction, val_fraction=val_fraction,
                 test_fraction=test_fraction, split_seed=split_seed, run_name=run_name).set_display_name("Record")
    tr = train(dataset=rec.outputs["dataset"], run_name=run_name, config=config, lr=lr, epochs=epochs,
               batch_size=batch_size, input_size=input_size, weight_decay=weight_decay, val_interval=val_interval,
               seed=seed).set_display_name("Train")
    ev = evaluate(dataset=rec.outputs["dataset"], candidates=tr.outputs["model"], run_name=run_name,
                  selection_metric=selection_metric).set_display_name("Evaluate")
    test(dataset=rec.outputs["dataset"], model=ev.outputs["selected_model"], run_name=run_name) \
        .set_display_name("Test")


# ------------------------------------------------------------------------------------------------ CLI
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", action="store_true", help="run the pipeline (locally unless --host is given)")
    mode.add_argument("--compile", action="store_true", help="write the KFP IR YAML and exit")
    p.add_argument("--output", "-o", type=Path, default=Path("alpr_pipeline.yaml"), help="--compile: output file")
    p.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API server URL (env KFP_HOST)")
    p.add_argument("--experiment", default="alpr", help="KFP experiment name (cluster runs)")
    p.add_argument("--workspace", type=Path, default=None,
                   help="local workspace (env ALPR_WORKSPACE, default ./.alpr)")
    p.add_argument("--bootstrap-images", type=int, default=BOOTSTRAP_IMAGES,
                   help=f"synthetic images in the first annotation version (default {BOOTSTRAP_IMAGES})")
    params = p.add_argument_group("pipeline parameters")
    for name, default in DEFAULTS.items():
        params.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), default=default,
                            help=f"(default: {default})")
    return p.parse_args(argv)


def pipeline_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The pipeline's parameter values chosen on the command line."""
    return {name: getattr(args, name) for name in DEFAULTS}


def compile_pipeline(output: Path) -> Path:
    """Compile :func:`alpr_pipeline` to KFP IR YAML at ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=alpr_pipeline, package_path=str(output))
    return output


def bootstrap(settings, n_images: int, *, progress: bool = True) -> bool:
    """Create the workspace and the first annotation version of synthetic plates, unless it exists.

    Returns:
        True when the annotation version was created now.
    """
    from alpr.metadata import MetadataStore
    from alpr.synth import synthesize
    from alpr.versions import register_annotation_version

    store = MetadataStore(settings.db_url)
    store.create_schema()
    if store.get_annotation_version(BOOTSTRAP_VERSION) is not None:
        return False
    folder = Path(settings.workspace) / "bootstrap" / BOOTSTRAP_VERSION
    if not any(folder.glob("*.json")) or len(list(folder.glob("*.json"))) != n_images:
        synthesize(folder, n_images, seed=0, progress=progress)
    register_annotation_version(settings, folder, BOOTSTRAP_VERSION,
                                description=f"{n_images} synthetic plates on scikit-image/matplotlib photographs",
                                progress=progress)
    return True


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
    return {
        "run": run,
        "seconds": round(seconds, 1),
        "val": by_split.get("val", {}),
        "test": by_split.get("test", {}),
        "model_uri": model["uri"] if model else None,
        "report": str(report) if report is not None and report.is_file() else None,
        "tensorboard": f"tensorboard --logdir {settings.storage_uri}/tensorboard",
        "metadata": store.url_for_display,
    }


def run_cluster(args: argparse.Namespace) -> dict:
    """Compile and submit a run to the KFP API server at ``args.host``; return its id and URL."""
    import kfp

    client = kfp.Client(host=args.host)
    run = client.create_run_from_pipeline_func(alpr_pipeline, arguments=pipeline_arguments(args),
                                               experiment_name=args.experiment)
    return {"run_id": run.run_id, "url": f"{args.host.rstrip('/')}/#/runs/details/{run.run_id}"}


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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.compile:
        print(f"compiled {compile_pipeline(args.output)}")
        return 0
    if args.host:
        print(json.dumps(run_cluster(args), indent=2))
        return 0
    _print_summary(run_local(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
