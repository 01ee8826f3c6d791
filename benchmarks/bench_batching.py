"""Would batching requests that arrive together, or fewer ONNX Runtime threads, buy throughput? The network passes of
a model's ONNX export timed per frame (a script to run, not a test; ``make bench-serve`` measures the server).

For each ONNX Runtime thread count (``--threads``) and batch size (``--batches``), runs the model's first pass (the
plate detector of a two-stage model, else the one detector) over ``batch`` 1280x720 frames as one batch, as a server
that gathered concurrent requests would (:meth:`alpr.model.onnx_detector.OnnxDetector.run` with ``batched=True``),
and prints the milliseconds per frame (p50 over ``--repeats``) with the stages' split
(:mod:`alpr.model.stages`), and frames/s per process. Two processes of one thread each (``--workers 2``,
``--onnx-threads 1``) get about twice the one-thread frames/s on two cores when nothing else runs; one process with
two threads gets the two-thread figure.

Usage::

    .venv/bin/python benchmarks/bench_batching.py --model MODEL_DIR [--threads 1,2] [--batches 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a model directory with its ONNX export")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="ONNX Runtime intra-op threads (default 1,2)")
    p.add_argument("--batches", type=_ints, default=[1, 2, 4], help="frames per batch (default 1,2,4)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if min(*args.threads, *args.batches, args.repeats) < 1:
        p.error("counts must be >= 1")
    return args


def time_first_pass(model_dir: Path, threads: int, batch: int, repeats: int) -> dict:
    """Per-frame ms (p50 of the batch's time / batch) and the mean stage split of the first pass."""
    from alpr.model.inference import PlateReader
    from alpr.model.stages import StageClock

    reader = PlateReader(model_dir, backend="onnx", threads=threads)
    detector = reader.plate_detector or reader.detector
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (720, 1280, 3), np.uint8) for _ in range(batch)]
    detector.run(frames, batched=True)  # warm-up
    per_frame, clocks = [], []
    for _ in range(repeats):
        clock = StageClock()
        t0 = time.perf_counter()
        detector.run(frames, batched=True, clock=clock)
        per_frame.append((time.perf_counter() - t0) * 1000 / batch)
        clocks.append(clock.seconds)
    stages = {k: statistics.fmean(c.get(k, 0.0) for c in clocks) * 1000 / batch for k in clocks[0]}
    p50 = statistics.median(per_frame)
    return {"threads": threads, "batch": batch, "ms_per_frame": p50, "frames_per_s": 1000 / p50, "stages_ms": stages}


def main(argv: list[str] | None = None) -> int:
    """Time every (threads, batch) pair; print the table (and write ``--json``)."""
    args = _parse_args(argv)
    rows = [time_first_pass(args.model, t, b, args.repeats) for t in args.threads for b in args.batches]
    print(f"first pass of {args.model} over 1280x720 frames, ONNX Runtime, p50 of {args.repeats} (ms per frame)")
    print(f"{'threads':>7} {'batch':>5} {'ms/frame':>9} {'frames/s':>9}   stages (ms/frame)")
    for r in rows:
        split = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms"].items())
        print(f"{r['threads']:>7} {r['batch']:>5} {r['ms_per_frame']:>9.1f} {r['frames_per_s']:>9.1f}   {split}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
