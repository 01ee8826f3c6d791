"""Time PlateReader's two back ends on the networks of the two-stage design, without training (a script, not a test).

Builds the plate detector (``configs/rtmdet_plate_alpr.py``, 2 classes, input ``--plate-input``) and the reader
(``configs/rtmdet_tiny_reader_alpr.py``, 17 classes, input ``--reader-input``) with their initial weights, writes
them as a two-stage model directory, exports it to ONNX (:func:`alpr.model.inference.export_onnx`) and times, per
back end (:class:`alpr.model.inference.PlateReader`, ``backend="pytorch"`` / ``"onnx"``), the two passes a
served frame costs:

- the plate pass over a ``--width`` x ``--height`` frame (resize and pad, network, decoding and NMS);
- the reader pass over ``--crops`` plate crops of the reader geometry's 16:9 shape, in one batch.

The network's cost does not depend on its weights; decoding and NMS do. mmdetection's initial weights (seeded;
``init_weights`` puts the class bias at the focal-loss prior) score every box about 0.01, under the 0.05
threshold, so these figures are the pre-processing's and the network's, with next to no decoding: a trained model
decodes its few dozen boxes on top. ``make bench-serve`` measures a trained model end to end.

Usage::

    .venv/bin/python benchmarks/bench_backends.py [--threads 2] [--repeats 30] [--json bench_backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _empty_coco(root: Path) -> Path:
    """A COCO training version with no images (build_config wants its files to exist)."""
    from alpr import spec

    (root / "annotations").mkdir(parents=True)
    cats = [{"id": i, "name": name} for i, name in enumerate(spec.CLASSES)]
    for split in ("train", "val", "test"):
        (root / "annotations" / f"{split}.json").write_text(
            json.dumps({"images": [], "annotations": [], "categories": cats})
        )
    return root


def build_model_dir(work: Path, reader_input: int, plate_input: int) -> Path:
    """A two-stage model directory with the initial weights of both networks, exported to ONNX."""
    import torch
    from mmdet.apis import init_detector

    from alpr import spec
    from alpr.model.inference import export_onnx, write_model_dir
    from alpr.model.training import Hyperparameters, build_config, build_plate_config

    torch.manual_seed(0)  # the same initial weights every run (the decoding's cost depends on them)
    data = _empty_coco(work / "data")
    hp = Hyperparameters(input_size=reader_input, plate_input_size=plate_input)
    files = {}
    for name, cfg, classes in (
        ("reader", build_config(data, work / "reader", hp, config="rtmdet_tiny_reader_alpr.py"), spec.CLASSES),
        ("plate", build_plate_config(data, work / "plate", hp), spec.PLATE_LABELS),
    ):
        model = init_detector(cfg, None, device="cpu")
        model.init_weights()  # mmdetection's initialisation: the class bias at the focal-loss prior (scores 0.01)
        config, checkpoint = work / f"{name}_config.py", work / f"{name}.pth"
        cfg.dump(str(config))
        torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": list(classes)}}}, checkpoint)
        files[name] = (config, checkpoint)
    out = write_model_dir(work / "model", *files["reader"], {}, plate_detector=files["plate"])
    export_onnx(out)
    return out


def time_passes(model_dir: Path, backend: str, frame: np.ndarray, crops: list[np.ndarray], repeats: int) -> dict:
    """p50 / p95 / mean ms of the plate pass and the batched reader pass of one back end."""
    from alpr.model.inference import PlateReader

    reader = PlateReader(model_dir, backend=backend)
    out = {}
    for name, call in (
        ("plate_pass", lambda: reader._run([frame], 0, reader.plate_detector)),
        ("reader_pass", lambda: reader._run(crops, 0, batched=True)),
    ):
        call()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[name] = {
            "p50": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "mean": statistics.fmean(times),
        }
    return out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader-input", type=int, default=256, help="the reader's input (default 256)")
    p.add_argument("--plate-input", type=int, default=640, help="the plate detector's input (default 640)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--crops", type=int, default=2, help="plate crops read per frame (default 2)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if min(args.crops, args.repeats, args.threads, args.width, args.height) < 1:
        p.error("counts and sizes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build, export, time both back ends; print the table (and write ``--json``)."""
    args = _parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (args.height, args.width, 3), np.uint8)
    crops = [rng.integers(0, 256, (144, 256, 3), np.uint8) for _ in range(args.crops)]
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        model_dir = build_model_dir(Path(tmp), args.reader_input, args.plate_input)
        result = {
            "frame": f"{args.width}x{args.height}",
            "crops": args.crops,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "loadavg_before": tuple(round(x, 2) for x in os.getloadavg()),
            "backends": {b: time_passes(model_dir, b, frame, crops, args.repeats) for b in ("pytorch", "onnx")},
        }
    print(f"{result['frame']} frame, {args.crops} crop(s), {args.threads} thread(s), {args.repeats} repeats (ms)")
    print(f"{'pass':<12} {'pytorch p50':>12} {'onnx p50':>9} {'ratio':>6} {'pytorch p95':>12} {'onnx p95':>9}")
    for name in ("plate_pass", "reader_pass"):
        t, o = result["backends"]["pytorch"][name], result["backends"]["onnx"][name]
        print(
            f"{name:<12} {t['p50']:>12.1f} {o['p50']:>9.1f} {t['p50'] / o['p50']:>5.2f}x {t['p95']:>12.1f} {o['p95']:>9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
