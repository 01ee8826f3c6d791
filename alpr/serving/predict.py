"""``python -m alpr.serving.predict --model MODEL_URI IMAGE_OR_DIR... [--out FILE]``.

Writes one JSON object mapping each image's file name to its reading (PLATE_SPEC.md "A reading"). MODEL_URI is a
model directory (a local path or a storage URI such as ``gs://…``) as selected by the pipeline's Evaluate step, or
``latest`` for the latest selected model in the metadata store (``ALPR_DB_URL``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from alpr import logs
from alpr.model.inference import (
    BACKENDS,
    DEFAULT_BACKEND,
    ModelError,
    PlateReader,
    fetch_model,
    resolve_model_uri,
)
from alpr.settings import load_settings

#: File suffixes read from a directory argument.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m alpr.serving.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory, storage URI (gs://…) or 'latest'")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR", help="image files or folders of images")
    p.add_argument("--out", type=Path, help="write the JSON here instead of standard output")
    p.add_argument("--device", default="cpu", help="torch device of the PyTorch back end (default: cpu)")
    add_backend_argument(p)
    p.add_argument("--batch-size", type=int, default=4)
    return p.parse_args(argv)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` (:data:`~alpr.model.inference.BACKENDS`, default
    :data:`~alpr.model.inference.DEFAULT_BACKEND`) to ``parser`` (or to one of its argument groups, which has the same
    ``add_argument``): this command's option and the model server's."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help=f"{DEFAULT_BACKEND} (default): ONNX Runtime when the model has model.onnx, else PyTorch; "
        "onnx or pytorch force one",
    )


def collect_images(inputs: list[Path]) -> list[Path]:
    """Expand folders (non-recursively, sorted) into their image files; files are kept as given.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    out: list[Path] = []
    for item in inputs:
        if item.is_dir():
            out.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            out.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    return out


def predict(
    model_uri: str,
    inputs: list[Path],
    *,
    device: str = "cpu",
    batch_size: int = 4,
    backend: str = DEFAULT_BACKEND,
) -> dict[str, dict]:
    """Read every image of ``inputs`` with the model at ``model_uri``; return file name → reading.

    ``backend`` is :class:`~alpr.model.inference.PlateReader`'s (:data:`~alpr.model.inference.BACKENDS`).

    Raises:
        ModelError: the model cannot be found or loaded.
        ValueError: two inputs share a file name, or a file is not a decodable image.
    """

    settings = load_settings()
    images = collect_images(inputs)
    names = [p.name for p in images]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"several inputs share the file name(s) {', '.join(dupes)}")
    uri = resolve_model_uri(model_uri, db_url=settings.db_url)
    try:
        model_dir = fetch_model(uri, settings.cache_dir / "models")
    except FileNotFoundError as exc:  # nothing at the URI: a model error (exit 1), not a bad image argument (exit 2)
        raise ModelError(f"model {uri}: {exc}") from exc
    with contextlib.redirect_stdout(sys.stderr):  # mmengine prints its checkpoint loading; stdout is the JSON's
        reader = PlateReader(model_dir, device=device, backend=backend)
    readings = reader.read_files(images, batch_size=batch_size)
    return dict(zip(names, readings))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input, 1 model error)."""
    args = _parse_args(argv)
    logs.setup(logging.WARNING)

    try:
        result = predict(args.model, args.inputs, device=args.device, batch_size=args.batch_size, backend=args.backend)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
