"""``alpr export-onnx MODEL_DIR``: add the ONNX export to a model directory that has none.

Evaluate exports every model it selects. A model directory written before that (``config.py``, ``model.pth``,
``model.json``, no ``model.onnx``) is served by the PyTorch back end only, which the serving image does not have
(docs/containers.md). This writes ``model.onnx`` (and ``plate_detector/model.onnx`` for a two-stage model) and
records them in ``model.json`` (:func:`alpr.model.inference.export_onnx`). It loads the model with mmdetection, so it
runs where torch is installed (the components image, a ``make install`` environment) and executes the model's
``config.py``: export only models this project trained. A ``gs://`` model: copy it down, export, copy it back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alpr import logs
from alpr.model.inference import PLATE_DETECTOR_DIR, ModelError, export_onnx


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="alpr export-onnx", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a local model directory (written in place)")
    return p.parse_args(argv)


def export_model(model_dir: Path) -> list[str]:
    """Export ``model_dir`` in place; returns the files written, relative to it (``["model.onnx", ...]``).

    Raises:
        ModelError: not a directory, or it lacks ``config.py``, ``model.pth`` or ``model.json``.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model {model_dir}: not a directory")
    record = export_onnx(model_dir)
    return [r["file"] if name == "reader" else f"{PLATE_DETECTOR_DIR}/{r['file']}" for name, r in record.items()]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0, or 1 with the reason on stderr when the model cannot be exported."""
    args = _parse_args(argv)
    logs.setup()
    try:
        written = export_model(args.model_dir)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {args.model_dir}: {', '.join(written)} (recorded in model.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
