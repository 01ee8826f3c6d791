"""Do the two back ends read alike? A model's val and test metrics on ONNX Runtime and on PyTorch, side by side
(a script to run, not a test).

Reads each split of a COCO training version (``--data``: its root, with ``annotations/{split}.json``) with the
model as it serves (:func:`alpr.model.evaluation.served_metrics`: both stages, the model's reading settings), once
per back end, and prints EIR, plate precision, character accuracy and mAP for each, with the largest difference.
The held-out set's figures come from ``make bench-heldout BACKEND=onnx`` and ``BACKEND=pytorch``.

Usage::

    ALPR_WORKSPACE=.alpr .venv/bin/python benchmarks/backend_accuracy.py --model latest --data DIR [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

#: The metrics compared, as :func:`alpr.model.evaluation.served_metrics` names them.
METRICS = ("eir", "plate_precision", "char_accuracy", "mAP")
BACKENDS = ("onnx", "pytorch")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="latest", help="model directory, gs:// URI or 'latest' (default)")
    p.add_argument("--data", type=Path, required=True, help="the COCO training version's root (annotations/, images)")
    p.add_argument(
        "--splits",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["val", "test"],
        help="comma-separated splits (default val,test)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def compare(model_dir: Path, data: Path, splits: list[str]) -> dict:
    """``{"splits": {split: {backend: {metric: value, "seconds": s}}}, "max_abs_diff": {metric: d}}``."""
    from alpr.model.evaluation import served_metrics

    out: dict = {"splits": {}, "max_abs_diff": {}}
    for split in splits:
        for backend in BACKENDS:
            t0 = time.perf_counter()
            metrics, _ = served_metrics(model_dir, data, split, backend=backend)
            row = {k: float(metrics.get(k, math.nan)) for k in METRICS}
            out["splits"].setdefault(split, {})[backend] = {**row, "seconds": round(time.perf_counter() - t0, 1)}
        a, b = (out["splits"][split][x] for x in BACKENDS)
        for k in METRICS:
            if not (math.isnan(a[k]) or math.isnan(b[k])):
                out["max_abs_diff"][k] = max(out["max_abs_diff"].get(k, 0.0), abs(a[k] - b[k]))
    return out


def format_table(result: dict) -> str:
    """The printed table of :func:`compare`."""
    lines = [f"{'split':<6} {'back end':<8} " + " ".join(f"{k:>15}" for k in METRICS) + f" {'seconds':>8}"]
    for split, rows in result["splits"].items():
        for backend, row in rows.items():
            lines.append(
                f"{split:<6} {backend:<8} " + " ".join(f"{row[k]:>15.4f}" for k in METRICS) + f" {row['seconds']:>8}"
            )
    diff = result["max_abs_diff"]
    lines.append("largest |onnx - pytorch|: " + ", ".join(f"{k} {v:.4f}" for k, v in diff.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Compare and print; returns 0, or 1 when the model cannot be found."""
    args = _parse_args(argv)
    from alpr.model.inference import ModelError, fetch_model, resolve_model_uri
    from alpr.settings import load_settings

    settings = load_settings()
    try:
        uri = resolve_model_uri(args.model, db_url=settings.db_url)
        model_dir = fetch_model(uri, settings.cache_dir / "models")
    except (ModelError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = {"model": args.model, "model_uri": uri, **compare(model_dir, args.data, args.splits)}
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
