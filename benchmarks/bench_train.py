"""Time-to-accuracy benchmark of the default training (a script to run, not a test).

Runs the pipeline's own steps in-process with the pipeline's default parameters (``alpr.defaults``) in a
separate workspace: bootstrap the synthetic annotation version, Record, Train (with
:class:`alpr.model.plugins.TimedSnapshotHook` saving the weights every ``--interval-min`` minutes of training time,
validation excluded), then evaluates every snapshot on the **val** split (the time-to-accuracy curve), then
Evaluate (selection among Train's candidates on val, as the pipeline does) and Test (the selected model on the
held-out **test** split). Prints:

- the curve: training minutes → val EIR, plate precision, character accuracy, mAP as mmengine's val loop computes
  them (one pass, thresholds 0.3), and EIR, plate precision, character accuracy of the same snapshot read the way
  the shipped model reads (the reading settings Evaluate chose on val for the selected model: thresholds, zoom);
- final val and test metrics of the selected model (EIR, plate precision, character accuracy, mAP, mAP@0.5);
- training throughput (images/s over training time), training time, peak memory (RSS of this process and of
  its finished children, MB);

and writes ``--json`` (everything above) and ``--png`` (the curve). Training never sees the test split; nothing
is tuned on it.

Usage::

    .venv/bin/python benchmarks/bench_train.py --workspace .alpr-bench --json docs/bench_train.json \\
        --png docs/bench_train.png
    .venv/bin/python benchmarks/bench_train.py --workspace .alpr-bench --evaluate-only   # re-evaluate snapshots
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_NAME = "bench-train"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workspace",
        type=Path,
        default=ROOT / ".alpr-bench",
        help="benchmark workspace (default ./.alpr-bench; kept apart from ./.alpr)",
    )
    p.add_argument(
        "--interval-min", type=float, default=5.0, help="minutes of training time between snapshots (default 5)"
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help="synthetic images in the bootstrap annotation version (default: the pipeline's)",
    )
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="skip bootstrap/Record/Train: evaluate the snapshots and candidates of an earlier run again",
    )
    p.add_argument(
        "--reuse-curve",
        action="store_true",
        help="with --evaluate-only: take the val curve from --json instead of evaluating the snapshots",
    )
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--png", type=Path, default=None, help="write the time-to-accuracy curve as PNG here")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one pipeline parameter (e.g. --param epochs=2); repeatable",
    )
    return p.parse_args(argv)


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident set size (MB) of this process and of its largest finished child (Linux: ru_maxrss in KB)."""
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
    }


def _params(overrides: list[str]) -> dict:
    from alpr.defaults import TRAINING_DEFAULTS

    params = dict(TRAINING_DEFAULTS)
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in params:
            raise SystemExit(f"--param {item}: unknown pipeline parameter {name!r}")
        params[name] = type(params[name])(value)
    return params


def _read_split(config: Path, checkpoint: Path, data_dir: Path, split: str, reading: dict) -> dict[str, float]:
    """EIR, plate precision, character accuracy of ``checkpoint`` on ``split`` read by :class:`PlateReader` with
    the ``reading`` settings (``thresholds``, ``zoom_below_px`` as in a model.json)."""
    import tempfile

    from alpr.model.inference import METADATA_FILE, PlateReader, write_model_dir
    from alpr.model.metrics import PlateMetrics

    images = json.loads((data_dir / "annotations" / f"{split}.json").read_text())["images"]
    with tempfile.TemporaryDirectory(prefix="alpr-bench-") as tmp:
        model = write_model_dir(Path(tmp) / "model", config, checkpoint, {})
        meta = json.loads((model / METADATA_FILE).read_text())
        (model / METADATA_FILE).write_text(json.dumps({**meta, **reading}))
        readings = PlateReader(model).read_files([data_dir / img["file_name"] for img in images])
    acc = PlateMetrics()
    for img, r in zip(images, readings):
        acc.add(img.get("plates", []), r)
    res = acc.result()
    return {k: float(res[k]) for k in ("eir", "plate_precision", "char_accuracy")}


def _plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [c["train_minutes"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label, style in (
        ("reader_eir", "EIR, shipped reader (zoom + tuned thresholds)", "-"),
        ("reader_char_accuracy", "char. accuracy, shipped reader", "-"),
        ("eir", "EIR, one pass at 0.3/0.3 (training-time val)", "--"),
        ("mAP", "COCO mAP", ":"),
    ):
        ax.plot(minutes, [c.get(key, float("nan")) for c in curve], marker="o", linestyle=style, label=label)
    for y, style in ((0.90, ":"), (0.95, "--")):
        ax.axhline(y, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xlabel("training time (minutes, validation excluded)")
    ax.set_ylabel("val split")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from alpr import logs

    logs.setup(logging.WARNING)
    params = _params(args.param)
    from alpr.data.bootstrap import bootstrap
    from alpr.defaults import BOOTSTRAP_IMAGES
    from alpr.model.evaluation import evaluate_checkpoint
    from alpr.model.training import Hyperparameters
    from alpr.settings import load_settings
    from alpr.steps.evaluate import evaluate_step
    from alpr.steps.lineage import DatasetLineage, read_lineage
    from alpr.steps.record import record_step
    from alpr.steps.test import test_step
    from alpr.steps.train import train_step

    settings = load_settings(workspace=args.workspace)
    settings.export()
    work = Path(settings.workspace) / "bench"
    data_dir, cand_dir, model_dir, report_dir = (work / n for n in ("dataset", "candidates", "model", "report"))
    snap_dir = work / "snapshots"
    hp = Hyperparameters(
        **{k: params[k] for k in ("lr", "epochs", "batch_size", "input_size", "weight_decay", "val_interval", "seed")}
    )
    timings: dict[str, float] = {}
    if args.evaluate_only and args.json and args.json.is_file():
        timings = {
            k: v
            for k, v in json.loads(args.json.read_text()).get("timings_s", {}).items()
            if k in ("bootstrap_s", "record_s", "train_step_s")
        }
    if not args.evaluate_only:
        if work.exists():
            raise SystemExit(f"{work} exists: use a fresh --workspace, or --evaluate-only to re-evaluate it")
        t0 = time.time()
        bootstrap(settings, args.images or BOOTSTRAP_IMAGES)
        timings["bootstrap_s"] = time.time() - t0
        t0 = time.time()
        record_step(
            settings,
            annotation_version=params["annotation_version"],
            fractions=(params["train_fraction"], params["val_fraction"], params["test_fraction"]),
            seed=params["split_seed"],
            run_name=RUN_NAME,
            out_dir=data_dir,
            progress=True,
        )
        timings["record_s"] = time.time() - t0
        t0 = time.time()
        hook = dict(type="TimedSnapshotHook", interval_s=args.interval_min * 60.0, out_dir=str(snap_dir))
        train_step(
            settings,
            data_root=data_dir,
            out_dir=cand_dir,
            run_name=RUN_NAME,
            hp=hp,
            config=params["config"],
            extra_hooks=[hook],
        )
        timings["train_step_s"] = time.time() - t0
    snapshots = json.loads((snap_dir / "snapshots.json").read_text())

    previous = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    reuse = args.evaluate_only and args.reuse_curve and previous.get("curve_val")
    curve = list(previous["curve_val"]) if reuse else []
    if not reuse:
        print(f"\nevaluating {len(snapshots)} snapshots on the val split …", flush=True)
    for snap in [] if reuse else snapshots:
        m = evaluate_checkpoint(cand_dir / "config.py", snap_dir / snap["file"], data_dir, "val")
        row = {
            "train_minutes": round(snap["train_seconds"] / 60.0, 2),
            "iter": snap["iter"],
            "epoch": snap["epoch"],
            **{k: round(v, 4) for k, v in m.items()},
        }
        curve.append(row)
        print(
            f"  {row['train_minutes']:6.1f} min  iter {row['iter']:5d}  EIR {row.get('eir', float('nan')):.3f}  "
            f"plate precision {row.get('plate_precision', float('nan')):.3f}  "
            f"char accuracy {row.get('char_accuracy', float('nan')):.3f}  mAP {row.get('mAP', float('nan')):.3f}",
            flush=True,
        )

    t0 = time.time()
    ev = evaluate_step(
        settings,
        data_root=data_dir,
        candidates_dir=cand_dir,
        out_dir=model_dir,
        run_name=RUN_NAME,
        selection_metric=params["selection_metric"],
    )
    timings["evaluate_s"] = time.time() - t0
    # The same snapshots read as the shipped model reads: with the reading settings Evaluate chose on val
    # (thresholds, zoom) for the selected model.
    reading = {
        k: v
        for k, v in json.loads((model_dir / "model.json").read_text()).items()
        if k in ("thresholds", "zoom_below_px")
    }
    print(f"\nsnapshots read with the selected model's reading settings {reading} (val split):", flush=True)
    for row, snap in zip(curve, snapshots):
        m = _read_split(cand_dir / "config.py", snap_dir / snap["file"], data_dir, "val", reading)
        row.update({f"reader_{k}": round(v, 4) for k, v in m.items()})
        print(
            f"  {row['train_minutes']:6.1f} min  EIR {m['eir']:.3f}  plate precision {m['plate_precision']:.3f}  "
            f"char accuracy {m['char_accuracy']:.3f}",
            flush=True,
        )
    t0 = time.time()
    te = test_step(settings, data_root=data_dir, model_dir=model_dir, report_dir=report_dir, run_name=RUN_NAME)
    timings["test_s"] = time.time() - t0

    last = snapshots[-1]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "parameters": params,
        "images": read_lineage(data_dir, DatasetLineage).images,
        "curve_val": curve,
        "train_minutes": round(last["train_seconds"] / 60.0, 2),
        "train_images_per_s": round(last["images"] / last["train_seconds"], 2) if last["train_seconds"] else None,
        "train_iterations": last["iter"],
        "selected_checkpoint": ev.checkpoint,
        "val": ev.metrics,
        "test": te.metrics,
        "report": str(te.report),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        # The training run's peak (an --evaluate-only run keeps the figure of the run that trained).
        "peak_rss_mb": (
            previous.get("peak_rss_mb")
            if args.evaluate_only and previous.get("peak_rss_mb")
            else {k: round(v, 1) for k, v in _peak_rss_mb().items()}
        ),
    }

    def fmt(m: dict) -> str:
        return "  ".join(
            f"{k} {m[k]:.3f}" for k in ("eir", "plate_precision", "char_accuracy", "mAP", "mAP_50") if k in m
        )

    print(f"\nselected {ev.checkpoint} (by val {params['selection_metric']})")
    print(f"val : {fmt(ev.metrics)}")
    print(f"test: {fmt(te.metrics)}  ({te.images} images)")
    print(
        f"training: {result['train_minutes']} min, {result['train_iterations']} iterations, "
        f"{result['train_images_per_s']} images/s; peak RSS {result['peak_rss_mb']} MB"
    )
    print(f"timings: {result['timings_s']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if args.png:
        _plot(
            curve,
            args.png,
            f"RTMDet-tiny {params['input_size']}px, batch {params['batch_size']}, "
            f"{params['epochs']} epochs, lr {params['lr']} — {platform.processor() or 'CPU'}",
        )
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
