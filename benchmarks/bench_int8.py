"""int8: ONNX Runtime's static quantisation of a model's networks, against float32 -- accuracy and speed (a script
to run, not a test).

Quantises each network of a model directory's ONNX export with ``onnxruntime.quantization.quantize_static`` (QDQ
format, int8 weights per channel and int8 activations, MinMax calibration on ``--calibration`` frames of the split,
prepared as :class:`alpr.model.onnx_detector.OnnxDetector` prepares them, after ``quant_pre_process``'s shape
inference), writes a copy of the model directory holding the int8 networks (``model.json``'s SHA-256 updated), and
prints for float32 and int8: EIR, plate precision, character accuracy and mAP on ``--split``
(:func:`alpr.model.evaluation.served_metrics`, ONNX back end) and the first pass's milliseconds per 1280x720 frame.

Usage::

    .venv/bin/python benchmarks/bench_int8.py --model MODEL_DIR --data COCO_ROOT [--split val] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import bench_batching
except ImportError:  # imported as benchmarks.bench_int8 from the repository root
    from benchmarks import bench_batching


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a model directory with its ONNX export")
    p.add_argument("--data", type=Path, required=True, help="the COCO training version's root")
    p.add_argument("--split", default="val")
    p.add_argument("--calibration", type=int, default=32, help="frames of the split to calibrate on (default 32)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--keep", type=Path, help="keep the int8 model directory here")
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


class _Frames:
    """An ``onnxruntime.quantization.CalibrationDataReader``: the split's frames, letterboxed to the record's input."""

    def __init__(self, paths: list[Path], record) -> None:
        self.paths, self.record, self.i = paths, record, 0

    def get_next(self) -> dict | None:
        import cv2

        from alpr.model.onnx_detector import letterbox

        if self.i >= len(self.paths):
            return None
        img = cv2.imread(str(self.paths[self.i]), cv2.IMREAD_COLOR)
        self.i += 1
        padded, _, _ = letterbox(img, self.record.input_size)
        return {self.record.input_name: padded.transpose(2, 0, 1)[None].astype(np.float32)}


def quantize_model_dir(model_dir: Path, out_dir: Path, frames: list[Path]) -> Path:
    """Copy ``model_dir`` to ``out_dir`` with every exported network quantised to int8 (see the module docstring)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from alpr.model.inference import METADATA_FILE, ONNX_KEY, PLATE_DETECTOR_DIR
    from alpr.model.onnx_detector import OnnxRecord, file_sha256

    shutil.copytree(model_dir, out_dir)
    meta = json.loads((out_dir / METADATA_FILE).read_text())
    for name, entry in meta[ONNX_KEY].items():
        where = out_dir if name == "reader" else out_dir / PLATE_DETECTOR_DIR
        record = OnnxRecord.from_json(entry)
        src = where / record.file
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(src),
                _Frames(frames, record),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        meta[ONNX_KEY][name] = {**entry, "sha256": file_sha256(src), "extra": {**record.extra, "quantized": "int8"}}
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Quantise, score and time both; print the table (and write ``--json``)."""
    args = _parse_args(argv)
    from alpr.model.evaluation import served_metrics

    images = json.loads((args.data / "annotations" / f"{args.split}.json").read_text())["images"]
    frames = [args.data / img["file_name"] for img in images[: args.calibration]]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp:
        t0 = time.perf_counter()
        int8_dir = quantize_model_dir(args.model, args.keep or Path(tmp) / "int8", frames)
        quantize_s = time.perf_counter() - t0
        for name, where in (("float32", args.model), ("int8", int8_dir)):
            metrics, _ = served_metrics(where, args.data, args.split, backend="onnx")
            rows[name] = {
                **{k: float(metrics[k]) for k in ("eir", "plate_precision", "char_accuracy", "mAP")},
                # the first pass over one 1280x720 frame, p50 ms, threads one per core
                "first_pass_ms": bench_batching.time_first_pass(where, 0, 1, args.repeats)["ms_per_frame"],
            }
    print(f"{args.model} on {args.split} ({len(images)} images), calibrated on {len(frames)}; quantised in "
          f"{quantize_s:.0f} s")  # fmt: skip
    print(f"{'':8} {'EIR':>7} {'precision':>9} {'char acc':>8} {'mAP':>7} {'first pass ms':>14}")
    for name, r in rows.items():
        print(
            f"{name:8} {r['eir']:>7.4f} {r['plate_precision']:>9.4f} {r['char_accuracy']:>8.4f} {r['mAP']:>7.4f} "
            f"{r['first_pass_ms']:>14.1f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "split": args.split, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
