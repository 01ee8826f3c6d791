"""``python -m dataset_tools synth``: write synthetic plate images with labelme annotations (:mod:`alpr.data.synth`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from alpr import spec


def _non_negative_int(text: str) -> int:
    """Parse a command-line integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``synth`` sub-command on ``subparsers`` and return its parser."""
    from alpr.data.synth import PRESETS

    parser = subparsers.add_parser(
        "synth",
        help="write synthetic plate images with labelme annotations",
        description=(
            "Draw Korean-style plates (PLATE_SPEC.md) onto photographs shipped with scikit-image and matplotlib "
            "and write <OUT>/synth_NNNNNN.jpg with its labelme file <OUT>/synth_NNNNNN.json. "
            "The same --seed gives identical files; sample i depends only on (seed, i)."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--n", type=_non_negative_int, required=True, help="number of images to write")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=spec.LAYOUTS,
        default=list(spec.LAYOUTS),
        metavar="LAYOUT",
        help=f"plate layouts to draw, any of: {' '.join(spec.LAYOUTS)} (default: all)",
    )
    parser.add_argument(
        "--conditions",
        choices=tuple(PRESETS),
        default="classic",
        help="classic: large plates on 512-800 px images; road: plates 3-45 %% of 640x480-1920x1080 frames, "
        "3-D pose, night, glare, blur, occlusion, up to 4 plates (default: classic)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the images and annotations; return 0, or 1 after printing the error to stderr."""
    from alpr.data.synth import preset, synthesize

    try:
        paths = synthesize(
            args.out,
            args.n,
            seed=args.seed,
            layouts=args.layouts,
            progress=not args.no_progress,
            conditions=preset(args.conditions),
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"dataset_tools synth: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} images with labelme annotations to {args.out}")
    return 0
