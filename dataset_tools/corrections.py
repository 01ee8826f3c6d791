"""``python -m dataset_tools corrections``: the readings corrected on the review page, as labelme files.

The way back from production to the data. The review page (:mod:`alpr.monitoring.review`) stores corrections in the
prediction log (:class:`alpr.monitoring.store.PredictionLog`); this command writes the latest correction of each
reading corrected since ``--since`` as one labelme 5.x file and its image in ``--out``
(PLATE_SPEC "Annotations (labelme)", the format :mod:`alpr.data.labelme` validates):

- each plate that is not ``false`` becomes a plate polygon (the box's four corners, clockwise from the top-left),
  labelled ``plate_one_line`` or ``plate_two_line``: the layout the model read for that plate, or, for a missed
  plate, the layout whose aspect ratio is nearer to the box's (:func:`layout_of_box`); the true text is kept in the
  shape's ``description`` (labelme shows it);
- its characters are rectangles from the reading when the plate was read (the read plate whose box overlaps it
  with IoU >= 0.5, PLATE_SPEC "Metrics") and its true text has as many characters as the read text: the read
  boxes, labelled with the true characters in reading order;
- otherwise (a missed plate, or a text of another length) the plate has no character shapes: the file is written
  all the same and listed in ``<out>/needs_character_boxes.txt`` (``<file>: <why>``, one line per file), to be
  finished in labelme. ``false`` plates are dropped.

Each complete file is checked with :func:`alpr.data.labelme.load_labelme` (the Record step's check) right after it
is written; one that fails (e.g. a read character whose centre lies outside its plate) is listed as needing
character boxes too, with the problem. ``python -m dataset_tools register <out> --name NAME`` then publishes the
folder as the next annotation version, all or nothing: it refuses the folder while any listed file is unfinished.

``--base VERSION`` starts the folder from the files of a registered annotation version (checked out and pulled from
the dataset repository), so that the next version is the previous one plus the corrections; a corrected image that
is already in it (an earlier round of corrections) is replaced.

Readings are skipped, with the reason printed, when their image is not stored (not sampled, or purged after the
retention period), when the stored image's size is not the reading's, and when no plate is left (a labelme file
needs one). Two corrected readings of the same image: the later correction wins. Exit status: 0 written (also when
some files need character boxes, or nothing was corrected), 1 failed (the message names the cause), 2 usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpr import spec
from dataset_tools.register import add_backend_options, fail, secrets_of

if TYPE_CHECKING:
    from alpr.monitoring.store import Correction, PlateRecord, PredictionLog, PredictionRecord

__all__ = [
    "NEEDS_CHARACTER_BOXES",
    "ExportReport",
    "ExportedFile",
    "add_parser",
    "export_corrections",
    "labelme_document",
    "layout_of_box",
    "parse_since",
    "run",
]

PROG = "dataset_tools corrections"
#: The list of files that need character boxes drawn in labelme, in the output folder.
NEEDS_CHARACTER_BOXES = "needs_character_boxes.txt"
#: The labelme version written in each file (the format of labelme 5.x, PLATE_SPEC "Annotations").
LABELME_VERSION = "5.4.1"
#: A read plate is the corrected one when their boxes overlap with at least this IoU (PLATE_SPEC "Metrics").
MATCH_IOU = 0.5
#: Exported files are named ``<FILE_PREFIX><first 16 hex digits of the image's sha256>.<ext>``.
FILE_PREFIX = "monitor-"
_SHA_DIGITS = 16


def _aspect(layout: str) -> float:
    width_mm, height_mm = spec.PLATE_SIZE_MM[layout]
    return width_mm / height_mm


def layout_of_box(box: Sequence[float]) -> str:
    """The layout of a plate box from its aspect ratio: ``one_line`` (520 x 110 mm, about 4.7 : 1) or ``two_line``
    (335 x 170 mm, about 2 : 1; :data:`alpr.spec.PLATE_SIZE_MM`), whichever is nearer on a log scale (the threshold
    is their geometric mean, about 3.05 : 1)."""
    x1, y1, x2, y2 = box
    ratio = (x2 - x1) / max(y2 - y1, 1e-9)
    threshold = math.sqrt(_aspect("one_line") * _aspect("two_line"))
    return "one_line" if ratio >= threshold else "two_line"


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _clip(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def _shape(label: str, points: list[list[float]], shape_type: str, group_id: int, **extra: Any) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}, **extra}


def labelme_document(
    record: PredictionRecord, correction: Correction, image_name: str
) -> tuple[dict[str, Any], list[str]]:
    """The labelme document of one corrected reading, and why it is incomplete.

    Args:
        record: the reading (its plates' layouts and character boxes are used).
        correction: the latest correction of it.
        image_name: the image's file name, written as ``imagePath`` (the image lies next to the JSON file).

    Returns:
        ``(document, reasons)``: the labelme 5.x document (``imageData`` null; size from ``record``), and one
        reason per plate left without character shapes (empty when the file is complete).
    """
    shapes: list[dict[str, Any]] = []
    reasons: list[str] = []
    kept = [p for p in correction.plates if p.status != "false"]
    for n, plate in enumerate(kept, start=1):
        box = _clip(plate.box, record.width, record.height)
        read = _matching_read_plate(record.plates, plate.box)
        layout = read.layout if read is not None and plate.status != "missed" else layout_of_box(box)
        x1, y1, x2, y2 = box
        shapes.append(
            _shape(
                f"plate_{layout}",
                [[x1, y1], [x2, y1], [x2, y2], [x1, y2]],
                "polygon",
                n,
                description=f"{plate.text} ({plate.status})",
            )
        )
        where = f"plate {n} {plate.text!r} ({plate.status}, box {', '.join(f'{v:.0f}' for v in box)})"
        if read is None:
            reasons.append(f"{where}: not read by the model, draw its {len(plate.text)} character boxes")
        elif len(read.characters) != len(plate.text):
            reasons.append(
                f"{where}: read as {read.text!r} ({len(read.characters)} characters), the true text has "
                f"{len(plate.text)}: draw its character boxes"
            )
        else:
            for char, true in zip(read.characters, plate.text, strict=True):
                cx1, cy1, cx2, cy2 = _clip(char.box, record.width, record.height)
                shapes.append(_shape(true, [[cx1, cy1], [cx2, cy2]], "rectangle", n))
    document = {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_name,
        "imageData": None,
        "imageHeight": record.height,
        "imageWidth": record.width,
    }
    return document, reasons


def _matching_read_plate(read: Sequence[PlateRecord], box: Sequence[float]) -> PlateRecord | None:
    best, best_iou = None, MATCH_IOU
    for plate in read:
        iou = _iou(plate.box, box)
        if iou >= best_iou:
            best, best_iou = plate, iou
    return best


# ------------------------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportedFile:
    """One labelme file written: ``json_path`` and ``image_path`` in the output folder, the reading
    (``prediction_id``) and correction (``correction_id``) it comes from, and ``reasons`` it is incomplete (empty:
    complete, it passes :func:`alpr.data.labelme.load_labelme`)."""

    json_path: Path
    image_path: Path
    prediction_id: int
    correction_id: int
    reasons: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether the file needs nothing more (no character boxes to draw)."""
        return not self.reasons


@dataclass
class ExportReport:
    """What :func:`export_corrections` did.

    Attributes:
        out_dir: the output folder.
        files: the corrected readings written, complete or not, by file name.
        skipped: ``(prediction id, why)`` of each corrected reading not written.
        base_files: files copied from the base annotation version (0 without ``base``).
        replaced: base files replaced by a correction of the same image.
    """

    out_dir: Path
    files: list[ExportedFile] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    base_files: int = 0
    replaced: int = 0

    @property
    def incomplete(self) -> list[ExportedFile]:
        """The files listed in :data:`NEEDS_CHARACTER_BOXES`."""
        return [f for f in self.files if not f.complete]

    def format(self) -> str:
        """A human-readable summary: counts, each skipped reading and each file that needs character boxes."""
        lines = [
            f"wrote {len(self.files)} corrected image(s) to {self.out_dir}: {len(self.files) - len(self.incomplete)} "
            f"complete, {len(self.incomplete)} need character boxes"
            + (
                f"; {self.base_files} file(s) from the base version ({self.replaced} replaced)"
                if self.base_files
                else ""
            )
        ]
        for pid, why in self.skipped:
            lines.append(f"  skipped reading {pid}: {why}")
        if self.incomplete:
            lines.append(
                f"finish these in labelme (listed in {self.out_dir / NEEDS_CHARACTER_BOXES}), then register the folder:"
            )
            lines += [f"  {f.json_path.name}: {'; '.join(f.reasons)}" for f in self.incomplete]
        return "\n".join(lines)


def _image_size(data: bytes) -> tuple[int, int] | None:
    """The displayed (EXIF-oriented) size of an encoded image, as labelme and the model see it; None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    # EXIF orientations 5-8 rotate by 90 or 270 degrees (what ImageOps.exif_transpose and OpenCV apply)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"--out {out_dir} is not empty: choose a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)


def copy_base_version(settings: Any, version: str, out_dir: Path, *, progress: bool = False) -> set[str]:
    """Copy the labelme files and images of the registered annotation version ``version`` into ``out_dir``
    (normalised, ``imagePath`` the image's file name next to the file); return the image file names.

    Raises:
        alpr.data.repo.DatasetRepoError: the version is not registered, its tag is missing, or git/DVC fail.
        alpr.data.versions.InvalidAnnotations: a file of the version does not validate.
    """
    from alpr.data import labelme
    from alpr.data.repo import ANNOTATIONS_DIR, DatasetRepo, DatasetRepoError
    from alpr.data.versions import InvalidAnnotations
    from alpr.metadata import MetadataStore

    store = MetadataStore(settings.db_url)
    try:
        if store.get_annotation_version(version) is None:
            raise DatasetRepoError(f"annotation version {version!r} is not registered in the metadata store")
    finally:
        store.dispose()
    repo = DatasetRepo(settings)
    with repo.locked():
        checkout = repo.checkout(version)
        repo.pull(checkout, ANNOTATIONS_DIR)
        report = labelme.validate_folder(checkout.path / ANNOTATIONS_DIR, progress=progress)
        if not report.ok:
            raise InvalidAnnotations(f"annotation version {version}", report)
        names = set()
        for lf in report.files:
            name = lf.image_path.name
            shutil.copy2(lf.image_path, out_dir / name)
            doc = labelme.normalise_file(lf, image_path=name)
            (out_dir / lf.path.name).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
            names.add(name)
    return names


def export_corrections(
    log: PredictionLog,
    since: datetime,
    out_dir: Path,
    *,
    base: tuple[Any, str] | None = None,
    progress: bool = False,
) -> ExportReport:
    """Write the latest correction of each reading corrected since ``since`` as labelme files (module docstring).

    Args:
        log: the prediction log.
        since: corrections made at or after this moment (timezone-aware).
        out_dir: a new or empty folder.
        base: ``(settings, annotation version name)``: start from that version's files
            (:func:`copy_base_version`).
        progress: show progress bars while copying the base version.

    Returns:
        the report; ``<out_dir>/needs_character_boxes.txt`` lists the incomplete files (written only when any).

    Raises:
        FileExistsError: ``out_dir`` is not empty.
        ValueError: ``since`` is naive.
    """
    from alpr.data import labelme

    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    report = ExportReport(out_dir)
    base_names: set[str] = set()
    if base is not None:
        base_names = copy_base_version(base[0], base[1], out_dir, progress=progress)
        report.base_files = len(base_names)
    # One file per image: the latest correction of the image wins (pairs come oldest correction first).
    latest: dict[str, tuple[PredictionRecord, Correction]] = {}
    for record, correction in log.corrections_since(since):
        earlier = latest.get(record.image_sha256)
        if earlier is not None:
            report.skipped.append(
                (earlier[0].id or 0, f"superseded by the correction of reading {record.id} of the same image")
            )
        latest[record.image_sha256] = (record, correction)
    for sha, (record, correction) in latest.items():
        pid = int(record.id or 0)
        if not any(p.status != "false" for p in correction.plates):
            report.skipped.append((pid, "no plate left after the correction (a labelme file needs one)"))
            continue
        data = log.image(pid)
        if data is None:
            report.skipped.append((pid, "its image is not stored (not sampled, or removed after the retention period)"))
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            report.skipped.append((pid, "the stored image is not the one read (its sha256 differs)"))
            continue
        size = _image_size(data)
        if size != (record.width, record.height):
            report.skipped.append(
                (pid, f"the stored image is {size} pixels, the reading's {record.width}x{record.height}")
            )
            continue
        ext = "png" if data.startswith(b"\x89PNG") else "jpg"
        stem = f"{FILE_PREFIX}{sha[:_SHA_DIGITS]}"
        image_path, json_path = out_dir / f"{stem}.{ext}", out_dir / f"{stem}.json"
        if image_path.name in base_names:
            report.replaced += 1
            for stale in out_dir.glob(f"{stem}.*"):
                stale.unlink()
        document, reasons = labelme_document(record, correction, image_path.name)
        image_path.write_bytes(data)
        json_path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        if not reasons:
            try:
                labelme.load_labelme(json_path)
            except labelme.AnnotationError as exc:
                reasons = [f"{exc.problem}; fix the character boxes"]
        report.files.append(ExportedFile(json_path, image_path, pid, correction.id, tuple(reasons)))
    report.files.sort(key=lambda f: f.json_path.name)
    if report.incomplete:
        (out_dir / NEEDS_CHARACTER_BOXES).write_text(
            "".join(f"{f.json_path.name}: {'; '.join(f.reasons)}\n" for f in report.incomplete)
        )
    return report


# ------------------------------------------------------------------------------------------ command line


def parse_since(text: str) -> datetime:
    """``--since``: an ISO date (``2026-11-29``, midnight UTC) or date and time (``2026-11-29T08:00``, UTC unless
    an offset is given), as a timezone-aware datetime.

    Raises:
        argparse.ArgumentTypeError: not an ISO date or date-time.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``corrections`` sub-command on ``subparsers`` and return its parser."""
    parser = subparsers.add_parser(
        "corrections",
        help="write the readings corrected on the review page as labelme files (the next annotation version)",
        description=(
            "Write the latest correction of each reading corrected since DATE (the monitor's review page) as a "
            "labelme file and its image in DIR: plate polygons from the boxes, character boxes from the reading "
            "when the true text has as many characters as the read one; other files are listed in "
            f"DIR/{NEEDS_CHARACTER_BOXES} to be finished in labelme. Then publish DIR with "
            "'python -m dataset_tools register DIR --name NAME'. Exit status: 0 written, 1 failed, 2 usage error."
        ),
    )
    parser.add_argument("--since", required=True, type=parse_since, metavar="DATE", help="corrections made since (UTC)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new or empty output folder")
    parser.add_argument(
        "--base",
        metavar="VERSION",
        help="start from the files of this registered annotation version (the next version = it + the corrections)",
    )
    parser.add_argument(
        "--storage-uri",
        metavar="URI",
        help="blob storage of the sampled images: a folder or gs://bucket/path "
        "(default: $ALPR_STORAGE_URI or <workspace>/storage)",
    )
    add_backend_options(parser, dataset=True)
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export the corrections; print the summary and return 0, or 1 after printing the cause to stderr."""
    from alpr.settings import load_settings

    secrets = secrets_of(args.db_url, args.dataset_repo, args.dvc_remote)
    try:
        settings = load_settings(
            workspace=args.workspace,
            db_url=args.db_url,
            storage_uri=args.storage_uri,
            dataset_repo=args.dataset_repo,
            dvc_remote=args.dvc_remote,
        )
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        return fail(PROG, f"invalid settings: {exc}", secrets)
    secrets += secrets_of(settings.db_url, settings.dataset_repo, settings.dvc_remote)
    try:
        from alpr.monitoring.store import PredictionLog

        log = PredictionLog(settings.db_url, settings.storage_uri)
        report = export_corrections(
            log,
            args.since,
            args.out,
            base=None if args.base is None else (settings, args.base),
            progress=not args.no_progress,
        )
    except (FileExistsError, NotADirectoryError) as exc:
        return fail(PROG, f"{exc}. Nothing was written.", secrets)
    except Exception as exc:
        return fail(PROG, f"the export to {args.out} failed ({type(exc).__name__}: {exc})", secrets)
    print(report.format())
    if not report.files:
        print(f"no corrected reading to export since {args.since.isoformat()}")
    return 0
