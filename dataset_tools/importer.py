"""``python -m dataset_tools import``: validate a labelme folder and (optionally) write it normalised.

Validation is :func:`alpr.data.labelme.validate_folder`: every file is checked and every problem reported, file by
file; the original project's label names are mapped (``l_board`` -> ``plate_one_line``, ``r_board`` ->
``plate_two_line``, ``a``..``e`` -> ``A``..``E``) and its text-region shapes (``r_s_n``, ``l_s_n``, ``r_m_n``,
``l_m_n``) dropped and counted (PLATE_SPEC.md "Annotations"). Each plate must hold
:data:`alpr.spec.PLATE_LENGTH` characters whose text, in reading order, is canonical (:data:`alpr.spec.PLATE_PATTERN`);
the problem names the file and the plate (``shapes[i]``, its label and box). A file larger than ``--max-bytes``
(default :data:`alpr.data.labelme.MAX_BYTES`) is refused before it is read, one with more than
:data:`alpr.data.labelme.MAX_SHAPES` shapes before its shapes are checked.

With ``--out``, the normalised labelme files (:func:`alpr.data.labelme.normalise_file`, ``imagePath`` set to the
image's file name) and copies of their images are written into a temporary folder beside OUT, validated again,
and only then renamed to OUT: OUT either does not exist or holds the complete, valid result. Nothing is written
when any input file has a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from alpr import spec
from alpr.data.labelme import MAX_BYTES, MAX_SHAPES, normalise_file, validate_folder

#: Name of the command, used in messages.
PROG = "dataset_tools import"


class OutputError(Exception):
    """The output folder cannot be written (it is not empty, or writing failed); the message says why."""


def _positive_int(text: str) -> int:
    """Parse a command-line integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``import`` sub-command on ``subparsers`` and return its parser."""
    parser = subparsers.add_parser(
        "import",
        help="validate a labelme folder (original label names accepted) and write it normalised",
        description=(
            "Validate every labelme JSON file directly in DIR and print the instances per class, the legacy "
            "text-region shapes dropped, and every problem found, file by file. Each plate must hold "
            f"{spec.PLATE_LENGTH} characters whose text, in reading order, is canonical (e.g. 12A3456); a file "
            f"may hold at most {MAX_SHAPES} shapes. With --out, write the normalised labelme files and copies "
            "of their images into OUT (all or nothing). Exit status: 0 all files good, "
            "1 a file has a problem (then nothing is written) or OUT cannot be written, 2 usage error."
        ),
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="folder of labelme JSON files (not recursive)")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="OUT",
        help="write the normalised files and their images here (must not exist, or be empty)",
    )
    parser.add_argument(
        "--image-dir",
        type=Path,
        metavar="D",
        help="look for the images in D (D/imagePath, then D/<file name>) instead of beside the JSON files",
    )
    parser.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=MAX_BYTES,
        metavar="N",
        help=f"refuse labelme files larger than N bytes (default: {MAX_BYTES})",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    return parser


# ------------------------------------------------------------------------------------------ output


def check_out_dir(out: Path) -> None:
    """Check that ``out`` can receive the result: it does not exist, or is an empty folder.

    Raises:
        OutputError: ``out`` is a file or a non-empty folder.
    """
    if out.is_dir():
        if any(out.iterdir()):
            raise OutputError(f"output folder {out} is not empty; choose a new folder or empty it first")
    elif out.exists() or out.is_symlink():
        raise OutputError(f"output path {out} exists and is not a folder")


def _write_files(files: list, folder: Path, progress: bool) -> None:
    """Write each validated file normalised, with a copy of its image, into ``folder``."""
    from tqdm.auto import tqdm

    for lf in tqdm(files, desc="write", unit="file", disable=not progress):
        image_name = lf.image_path.name
        shutil.copy2(lf.image_path, folder / image_name)
        doc = normalise_file(lf, image_path=image_name)
        (folder / lf.path.name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_normalised(files: list, out: Path, *, progress: bool = True, max_bytes: int | None = None) -> None:
    """Write ``files`` (validated :class:`alpr.data.labelme.LabelmeFile` objects) normalised into ``out``, atomically.

    The files are written into a temporary folder beside ``out``, validated again, then renamed to ``out``; on
    any failure the temporary folder is removed and ``out`` is left as it was.

    Raises:
        OutputError: ``out`` is not empty, a JSON and an image file would share a name, writing failed, or the
            written files do not validate (a bug: the report is in the message).
    """
    out = Path(out)
    check_out_dir(out)
    clash = {lf.path.name for lf in files} & {lf.image_path.name for lf in files}
    if clash:
        raise OutputError(f"an image and a labelme file would both be written as {sorted(clash)[0]!r} in {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_files(files, tmp, progress)
        report = validate_folder(tmp, progress=progress, max_bytes=max(max_bytes or 0, MAX_BYTES))
        if not report.ok or len(report.files) != len(files):
            raise OutputError(f"the normalised files do not validate:\n{report.format()}")
        check_out_dir(out)  # again: something may have appeared in the meantime
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    """Validate the folder, print the report, write OUT when asked; return 0, or 1 (problems printed)."""
    progress = not args.no_progress
    if args.out is not None:
        try:
            check_out_dir(args.out)  # before the (possibly long) validation
        except OutputError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
    try:
        report = validate_folder(args.folder, progress=progress, image_dir=args.image_dir, max_bytes=args.max_bytes)
    except NotADirectoryError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(report.format())
    if not report.ok:
        if not report.checked:
            print(f"{PROG}: error: no labelme JSON files in {args.folder}", file=sys.stderr)
            return 1
        written = f"; nothing written to {args.out}" if args.out is not None else ""
        print(
            f"{PROG}: error: {args.folder} refused: {len(report.errors)} problem(s) in "
            f"{len(report.bad_files())} file(s) of {report.checked}{written}",
            file=sys.stderr,
        )
        return 1
    if args.out is None:
        return 0
    try:
        write_normalised(report.files, args.out, progress=progress, max_bytes=args.max_bytes)
    except OutputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(report.files)} normalised labelme files with their images to {args.out}")
    return 0
