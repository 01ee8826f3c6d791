"""Plate detector design benchmark: recall per plate-width bucket against latency (a script to run, not a test).

The measurement behind the two-stage design of ``docs/detection_design.md``. It

1. draws a road-like training set with :mod:`alpr.data.synth` (``Conditions`` preset ``ROAD``: plates 3-45 % of the
   frame width, 640x480 to 1920x1080, yaw/pitch/roll, night and glare, blur, occlusion, up to 4 plates) and writes it
   as a COCO training version (:func:`alpr.data.coco.write_coco_dataset`), unless ``--data`` already holds one;
2. trains the plate detector (``configs/rtmdet_plate_alpr.py`` through
   :func:`alpr.model.training.build_plate_config`, the Train step's own code) for ``--epochs``, unless
   ``--checkpoint`` names one;
3. reads a held-out road set (the type faces and photographs of ``bench_heldout.py`` that training never uses, a
   seed of its own, 1920x1080 and 1280x720 frames) with the detector at each ``--sizes`` input (long side, padded
   to a multiple of 32 as the reader pads), and prints plate recall (IoU >= 0.5, PLATE_SPEC matching) per
   plate-width bucket (:data:`alpr.model.breakdown.WIDTH_BUCKETS`) and the median and p95 network time per frame
   (mmdetection's test pipeline + network + NMS, 2 threads, decoded frames: JPEG decoding excluded).

Usage::

    .venv/bin/python benchmarks/bench_plate_detector.py --work .alpr-bench/plate --epochs 8 \\
        --sizes 480,640,800 --json docs/bench_plate_detector.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Seeds of the training frames and of the held-out frames (distinct from the bootstrap's 0 and bench_heldout's).
TRAIN_SEED = 4242
HELDOUT_SEED = 9002


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / ".alpr-bench" / "plate", help="work folder (data, training)")
    p.add_argument("--images", type=int, default=2000, help="road-like training + val frames (default 2000)")
    p.add_argument("--epochs", type=int, default=8, help="plate detector epochs (default 8)")
    p.add_argument("--plate-input-size", type=int, default=640, help="detector input trained for (default 640)")
    p.add_argument("--crop-size", type=int, default=320, help="training crop (the reader's input_size; default 320)")
    p.add_argument("--checkpoint", type=Path, default=None, help="skip training: evaluate this checkpoint")
    p.add_argument("--sizes", default="480,640,800", help="inference inputs to measure (comma-separated)")
    p.add_argument("--n", type=int, default=200, help="held-out frames (default 200)")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    return p.parse_args(argv)


def _training_version(work: Path, n: int) -> Path:
    """A COCO training version of ``n`` ROAD frames in ``work/data`` (made once)."""
    from alpr.data import synth
    from alpr.data.coco import write_coco_dataset
    from alpr.data.labelme import validate_folder

    data = work / "data"
    if (data / "annotations" / "train.json").is_file():
        return data
    frames = work / "frames"
    if len(list(frames.glob("*.json"))) != n:
        synth.synthesize(frames, n, seed=TRAIN_SEED, conditions=synth.ROAD)
    report = validate_folder(frames)
    write_coco_dataset(report.files, data, seed=0, fractions=(0.9, 0.1, 0.0))
    return data


def _train(data: Path, work: Path, args: argparse.Namespace) -> tuple[Path, Path, dict, float]:
    """Train the plate detector; return ``(config.py, best checkpoint, val metrics, training seconds)``."""
    from alpr.model.training import Hyperparameters, build_plate_config, train

    hp = Hyperparameters(input_size=args.crop_size, plate_input_size=args.plate_input_size, plate_epochs=args.epochs)
    cfg = build_plate_config(data, work / "train", hp, num_workers=1)
    start = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - start
    best = [c for c in result.checkpoints if c.name.startswith("best_")] or result.checkpoints[-1:]
    return result.config_path, best[-1], result.val_metrics, seconds


def _heldout(work: Path, n: int) -> list[Path]:
    """``n`` held-out ROAD frames (half 1920x1080, half 1280x720) with unseen faces and photographs."""
    from bench_heldout import heldout_fonts, heldout_photos

    from alpr.data import synth

    out = work / "heldout"
    jsons: list[Path] = []
    for long_side, count, seed in ((1920, n - n // 2, HELDOUT_SEED), (1280, n // 2, HELDOUT_SEED + 1)):
        folder = out / str(long_side)
        sources = synth.Sources(
            fonts=heldout_fonts(), photos=heldout_photos(), long_side=(long_side, long_side), aspects=((16, 9),)
        )
        existing = sorted(folder.glob("*.json"))
        jsons += (
            existing
            if len(existing) == count
            else synth.synthesize(folder, count, seed=seed, sources=sources, conditions=synth.ROAD)
        )
    return jsons


def _measure(config: Path, checkpoint: Path, jsons: list[Path], size: int) -> dict:
    """Recall per width bucket and network time per frame of the detector at input ``size``."""
    import cv2
    import torch
    from mmdet.apis import inference_detector, init_detector

    from alpr import spec
    from alpr.data.coco import ground_truth_plates
    from alpr.data.labelme import load_labelme
    from alpr.model.breakdown import BreakdownMetrics
    from alpr.model.checkpoints import load_saved_config, trusted_checkpoint_loading
    from alpr.model.torch_detector import inference_pipeline

    torch.set_num_threads(2)
    with trusted_checkpoint_loading():
        model = init_detector(load_saved_config(config), str(checkpoint), device="cpu")
    pipeline = inference_pipeline(model, size)
    acc, times = BreakdownMetrics(), []
    for j in jsons:
        lf = load_labelme(j)
        img = cv2.imread(str(j.with_suffix(".jpg")), cv2.IMREAD_COLOR)
        start = time.perf_counter()
        with torch.no_grad():
            pred = inference_detector(model, img, test_pipeline=pipeline).pred_instances
        times.append(time.perf_counter() - start)
        keep = pred.scores.numpy() >= 0.3
        plates = [
            {
                "box": [float(v) for v in b],
                "text": "",
                "score": float(s),
                "layout": spec.LAYOUT_OF_LABEL[spec.PLATE_LABELS[int(c)]],
            }
            for b, c, s in zip(pred.bboxes.numpy()[keep], pred.labels.numpy()[keep], pred.scores.numpy()[keep])
        ]
        acc.add(ground_truth_plates(lf), {"plates": plates}, (lf.width, lf.height))
    widths = acc.result().groups["width"]
    times_ms = sorted(1000 * t for t in times[1:] or times)
    return {
        "size": size,
        "recall_by_width": {k: (None if math.isnan(v["recall"]) else v["recall"]) for k, v in widths.items()},
        "n_truth_by_width": {k: v["n_truth"] for k, v in widths.items()},
        "ms_p50": statistics.median(times_ms),
        "ms_p95": times_ms[int(0.95 * (len(times_ms) - 1))],
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    work = args.work.absolute()
    data = _training_version(work, args.images)
    if args.checkpoint:
        config, checkpoint, val, seconds = args.checkpoint.parent / "config.py", args.checkpoint, {}, float("nan")
    else:
        config, checkpoint, val, seconds = _train(data, work, args)
        print(f"trained {args.epochs} epochs in {seconds / 60:.1f} min: {checkpoint.name}, val {val}")
    jsons = _heldout(work, args.n)
    rows = [_measure(config, checkpoint, jsons, int(s)) for s in args.sizes.split(",")]
    buckets = list(rows[0]["recall_by_width"])
    print(f"held-out road frames: {len(jsons)}; plates per width bucket: {rows[0]['n_truth_by_width']}")
    print("input  " + "  ".join(f"{b:>8}" for b in buckets) + "   p50 ms  p95 ms")
    for r in rows:
        recalls = "  ".join(
            f"{r['recall_by_width'][b] if r['recall_by_width'][b] is not None else math.nan:8.3f}" for b in buckets
        )
        print(f"{r['size']:5d}  {recalls}   {r['ms_p50']:6.1f}  {r['ms_p95']:6.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "epochs": args.epochs,
                    "train_seconds": seconds,
                    "val": val,
                    "checkpoint": str(checkpoint),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
