"""Annotation versions and training versions: the two publishing steps of the data path.

- :func:`register_annotation_version` publishes a validated labelme folder as a new annotation version
  (DVC add + push, git commit + tag on ``main``, metadata rows).
- :func:`record_training_version` turns an annotation version into a COCO train/val/test training version
  (the pipeline's Record step): check out the tag, ``dvc pull``, validate, convert, split, publish.

Both are all-or-nothing (see :mod:`alpr.dataset_repo`): the metadata rows are written in one transaction that
commits only after the DVC push and the git tag push succeeded; a failure leaves no rows and no tag, and the
step can simply be run again. Both are idempotent: re-running with the same inputs returns the existing version.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from alpr import coco, labelme
from alpr.dataset_repo import ANNOTATIONS_DIR, TRAINING_DIR, DatasetRepo, DatasetRepoError, params_hash
from alpr.metadata import MetadataStore
from alpr.settings import Settings

log = logging.getLogger(__name__)

#: Bumped whenever the labelme → COCO conversion changes its output, so new training versions are made.
CONVERTER_VERSION = 1


class InvalidAnnotations(ValueError):
    """An annotation folder failed validation; ``report`` lists every problem, file by file."""

    def __init__(self, where: str, report: labelme.FolderReport) -> None:
        self.report = report
        super().__init__(f"{where}: {len(report.errors)} invalid labelme file(s)\n{report.format()}")


@dataclass
class TrainingVersion:
    """A recorded training version.

    Attributes:
        name: the version's name, also its git tag.
        annotation_version: the annotation version (tag) it was made from.
        git_rev: commit SHA of the tag.
        path: local folder with ``annotations/{train,val,test}.json`` (COCO) and ``images/``.
        counts: images per split and per-class instance counts (see :func:`alpr.coco.write_coco_dataset`).
        created: False when the version already existed and was only fetched.
    """

    name: str
    annotation_version: str
    git_rev: str
    path: Path
    counts: dict = field(default_factory=dict)
    created: bool = True


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _validate(folder: Path, where: str, progress: bool) -> labelme.FolderReport:
    report = labelme.validate_folder(folder, progress=progress)
    if not report.ok or not report.files:
        if not report.files and report.ok:
            raise ValueError(f"{where}: no labelme JSON files found in {folder}")
        raise InvalidAnnotations(where, report)
    return report


def register_annotation_version(
    settings: Settings, folder: Path, name: str, *, description: str = "", progress: bool = True
) -> str:
    """Publish the labelme ``folder`` as annotation version ``name``; return the commit SHA.

    Args:
        settings: backends (dataset repository, DVC remote, metadata store).
        folder: labelme JSON files with their images side by side.
        name: the new version's name, used as git tag (e.g. ``annotations-v2``).
        description: free text stored with the version.
        progress: show progress bars.

    Raises:
        InvalidAnnotations: a labelme file is broken (every problem is listed); nothing is published.
        alpr.metadata.AlreadyExists: ``name`` is already registered.
        DatasetRepoError: git or DVC failed (the rows are rolled back, the tag removed).
    """
    folder = Path(folder)
    report = _validate(folder, str(folder), progress)
    store = MetadataStore(settings.db_url)
    store.create_schema()
    repo = DatasetRepo(settings)
    if settings.is_local_dataset_repo:
        repo.init_origin()
    if store.get_annotation_version(name) is not None and repo.tag_exists(name):
        from alpr.metadata import AlreadyExists

        raise AlreadyExists(f"annotation version {name!r} is already registered")
    checkout = repo.checkout("main")
    target = checkout.path / ANNOTATIONS_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    images = []
    for lf in report.files:
        shutil.copy2(lf.image_path, target / lf.image_path.name)
        (target / lf.path.name).write_text(_dump(labelme.normalise_file(lf)))
        images.append(
            {
                "file_name": lf.image_path.name,
                "width": lf.width,
                "height": lf.height,
                "md5": _md5(lf.image_path),
                "plate_count": sum(1 for s in lf.shapes if s.label.startswith("plate_")),
            }
        )
    with store.transaction() as tx:
        try:
            rev = repo.publish(checkout, data_path=ANNOTATIONS_DIR, tag=name, message=f"Annotation version {name}",
                               branch="main")
            tx.add_annotation_version(
                name, git_rev=rev, class_counts=dict(report.class_counts), images=images, description=description
            )
        except BaseException:
            repo.delete_tag(name)
            raise
    log.info("registered annotation version %s (%d images) at %s", name, len(images), rev)
    return rev


def _dump(obj: dict) -> str:
    import json

    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def training_version_name(annotation_version: str, digest: str) -> str:
    """The name (and tag) of the training version of ``annotation_version`` with parameter hash ``digest``."""
    return f"training-{annotation_version}-{digest[:10]}"


def record_training_version(
    settings: Settings,
    annotation_version: str,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    out_dir: Path | None = None,
    progress: bool = True,
) -> TrainingVersion:
    """Record (or fetch, when it exists) the COCO training version of ``annotation_version``.

    Steps: check out the annotation tag, ``dvc pull`` its images, validate every labelme file, convert to
    COCO with the seeded split (:func:`alpr.coco.split_of`), then in one transaction: metadata rows,
    ``dvc add`` + push, git commit + tag + push.

    Args:
        settings: backends.
        annotation_version: tag of the dataset repository.
        fractions: train/val/test fractions (sum to 1).
        seed: split seed.
        out_dir: where to copy the COCO dataset for the caller (e.g. a KFP Dataset artifact); when None the
            dataset stays in the working copy (``TrainingVersion.path``).
        progress: show progress bars.

    Raises:
        DatasetRepoError: the tag does not exist, or git/DVC fail.
        InvalidAnnotations: a labelme file of the version is broken; nothing is recorded.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    coco.split_of("probe", seed, fractions)  # validates the fractions before any side effect
    store = MetadataStore(settings.db_url)
    store.create_schema()
    if store.get_annotation_version(annotation_version) is None:
        raise DatasetRepoError(f"annotation version {annotation_version!r} is not registered in the metadata store")
    repo = DatasetRepo(settings)
    digest = params_hash(
        {"annotation_version": annotation_version, "fractions": list(fractions), "seed": seed,
         "converter": CONVERTER_VERSION}
    )
    name = training_version_name(annotation_version, digest)
    existing = store.find_training_version(annotation_version, digest)
    if existing is not None and repo.tag_exists(name):
        checkout = repo.checkout(name)
        data = f"{TRAINING_DIR}/{name}"
        repo.pull(checkout, data)
        log.info("training version %s exists; fetched it", name)
        return _deliver(TrainingVersion(name, annotation_version, checkout.rev, checkout.path / data,
                                        existing.get("counts") or {}, created=False), out_dir)

    checkout = repo.checkout(annotation_version)
    repo.pull(checkout, ANNOTATIONS_DIR)
    report = _validate(checkout.path / ANNOTATIONS_DIR, f"annotation version {annotation_version}", progress)
    data = f"{TRAINING_DIR}/{name}"
    target = checkout.path / data
    shutil.rmtree(target, ignore_errors=True)
    counts = coco.write_coco_dataset(report.files, target, seed, fractions)
    assignment = coco.split_assignment(report.files, seed, fractions)
    with store.transaction() as tx:
        try:
            rev = repo.publish(checkout, data_path=data, tag=name, message=f"Training version {name}", branch=None)
            tx.add_training_version(
                name, annotation_version, params_hash=digest, git_rev=rev, seed=seed, fractions=fractions,
                counts=counts, splits=assignment,
            )
        except BaseException:
            repo.delete_tag(name)
            raise
    log.info("recorded training version %s at %s", name, rev)
    return _deliver(TrainingVersion(name, annotation_version, rev, target, counts, created=True), out_dir)


def _deliver(version: TrainingVersion, out_dir: Path | None) -> TrainingVersion:
    if out_dir is None:
        return version
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(version.path, out_dir)
    version.path = out_dir
    return version
