"""Annotation versions and training versions: the two publishing steps of the data path.

- :func:`register_annotation_version` publishes a validated labelme folder as a new annotation version
  (DVC add + push, git commit + tag on ``main``, metadata rows).
- :func:`record_training_version` turns an annotation version into a COCO train/val/test training version
  (the pipeline's Record step): check out the tag, ``dvc pull``, validate, convert, split, publish.

The same code runs on the embedded defaults (SQLite, a local bare git repository, a local DVC remote) and on the
production backends (MySQL, the team's git server, a ``gs://`` DVC remote): only :class:`~alpr.settings.Settings`
differ (see :mod:`alpr.data.repo` for the DVC configuration per environment).

All-or-nothing. A version is *recorded* when its metadata rows are committed and its tag is on the origin. Each
step (1) does all its local work and pushes the content-addressed DVC objects, makes the git commit and a local
tag, then (2) in one metadata transaction inserts the rows, pushes the tag (atomically with ``main`` for an
annotation version) and commits right after the push. Any failure before the push leaves no row and no tag (DVC
objects in the remote are harmless); a failure of the push or of the commit rolls the rows back and removes the
tag again (a compare-and-delete of the tag object this step pushed). The one state a crash can leave is a process
killed (SIGKILL, node loss) in the milliseconds between the origin accepting the tag and the database committing:
a tag without rows. Such a tag is not a version (readers go by the rows, and every step checks both); the next run
of the same step re-creates the identical commit and tag object (fixed dates and identity), its push is a no-op
and the rows are committed. A row is never committed without its tag on the origin. If a database commit fails
in a way that leaves it unknown whether it landed, the tag is kept rather than risk a row without a tag.

Idempotent: re-running with the same inputs returns the existing version (``created=False``) and changes nothing.
Two runs of the same step on one machine (one cache folder) are serialised by the working copy's lock; two runs on
different machines racing for the same training version are decided by the database's unique keys, and the loser
fetches the winner's version.

Validation policy: every labelme file of a version is checked before anything is published, by both steps (Record
re-validates because an annotation version may have reached the dataset repository without
:func:`register_annotation_version`, e.g. labels pushed by hand). One bad file fails the whole version -- no file is
skipped, since a silently smaller dataset would be a different dataset under the same name -- and the
:class:`InvalidAnnotations` error lists every problem, file by file (unknown label, invalid JSON, missing image ...),
so that one round of fixes suffices.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alpr.data import coco, labelme
from alpr.data.repo import (
    ANNOTATIONS_DIR,
    TRAINING_DIR,
    Checkout,
    DatasetRepo,
    DatasetRepoError,
    TagConflict,
    params_hash,
)
from alpr.metadata import AlreadyExists, MetadataStore, MetadataTx
from alpr.settings import Settings

log = logging.getLogger(__name__)

#: Bumped whenever the labelme → COCO conversion changes its output, so new training versions are made.
CONVERTER_VERSION = 1


class InvalidAnnotations(ValueError):
    """An annotation folder failed validation; ``report`` lists every problem, file by file."""

    def __init__(self, where: str, report: labelme.FolderReport) -> None:
        self.report = report
        super().__init__(
            f"{where}: {len(report.bad_files())} invalid labelme file(s), {len(report.errors)} problem(s); "
            f"the whole version is refused\n{report.format()}"
        )


@dataclass
class TrainingVersion:
    """A recorded training version.

    Attributes:
        name: the version's name, also its git tag.
        annotation_version: the annotation version (tag) it was made from.
        git_rev: commit SHA of the tag.
        path: local folder with ``annotations/{train,val,test}.json`` (COCO) and ``images/``.
        counts: images per split and per-class instance counts (see :func:`alpr.data.coco.write_coco_dataset`).
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
    if report.ok:
        return report
    if not report.errors:
        raise ValueError(f"{where}: no labelme JSON files found in {folder}")
    raise InvalidAnnotations(where, report)


def _publish(
    store: MetadataStore,
    repo: DatasetRepo,
    checkout: Checkout,
    *,
    data_path: str,
    tag: str,
    message: str,
    branch: str | None,
    write_rows: Callable[[MetadataTx, str], object],
    rows_committed: Callable[[], bool],
) -> str:
    """Publish ``data_path`` of ``checkout`` as ``tag`` with its metadata rows, all or nothing; return the commit.

    Order: DVC add + push, git commit + local tag (nothing visible yet); then in one transaction the rows
    (``write_rows(tx, commit_sha)``; a duplicate fails here, before the tag is visible), the atomic tag push, and
    the commit right after it. See the module docstring for what a failure at each point leaves.
    """
    rev = repo.commit_version(checkout, data_path=data_path, tag=tag, message=message)
    pushing = pushed = False
    try:
        with store.transaction() as tx:
            write_rows(tx, rev)
            pushing = True
            repo.push_version(tag, rev, branch=branch)
            pushed = True
        # <- the rows are committed here, right after the push
    except BaseException as exc:
        if not pushing:  # nothing reached the origin's refs
            raise
        if pushed:  # the commit itself failed: did it land?
            try:
                landed = rows_committed()
            except Exception as check_exc:
                log.warning(
                    "commit of %s failed (%s) and its outcome is unknown (%s); tag kept on %s",
                    tag,
                    exc,
                    check_exc,
                    repo.origin,
                )
                raise exc from None  # the commit's own error is the one to report; the check's is logged
            if landed:  # recorded after all: keep the tag
                if not isinstance(exc, Exception):  # an interrupt (Ctrl-C, SystemExit): let it through
                    raise
                log.warning("commit of %s reported %r but the rows are there: recorded", tag, exc)
                return rev
        repo.delete_tag(tag, branch=branch, restore=checkout.rev, expected=rev)
        raise
    return rev


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
        DatasetRepoError: git or DVC failed (the rows are rolled back, the tag removed), or a tag ``name`` that
            is not a registered version exists with other content.
    """
    folder = Path(folder)
    report = _validate(folder, str(folder), progress)
    store = MetadataStore(settings.db_url)
    store.create_schema()
    repo = DatasetRepo(settings)
    if settings.is_local_dataset_repo:
        repo.init_origin()
    with repo.locked():
        tag_rev = repo.resolve(name)
        if store.get_annotation_version(name) is not None:
            missing = "" if tag_rev else f" (its tag is missing on {repo.origin})"
            raise AlreadyExists(f"annotation version {name!r} is already registered{missing}")
        base = "main"
        if tag_rev is not None and tag_rev == repo.resolve("main"):
            # A tag without rows at the tip of main: left by a registration killed between its push and its
            # commit. Rebuild on its parent: the same content gives the same commit, and this run completes it.
            parents = repo.resolve_parents(tag_rev)
            base = parents[0] if parents else base
        checkout = repo.checkout(base)
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
        try:
            rev = _publish(
                store,
                repo,
                checkout,
                data_path=ANNOTATIONS_DIR,
                tag=name,
                message=f"Annotation version {name}",
                branch="main",
                write_rows=lambda tx, rev: tx.add_annotation_version(
                    name, git_rev=rev, class_counts=dict(report.class_counts), images=images, description=description
                ),
                rows_committed=lambda: store.get_annotation_version(name) is not None,
            )
        except TagConflict as exc:
            if tag_rev is not None:
                raise TagConflict(
                    f"{exc}; the tag {name!r} is not a registered annotation version (no metadata row): delete it "
                    f"from {repo.origin} or choose another name"
                ) from exc
            raise
    log.info("registered annotation version %s (%d images) at %s", name, len(images), rev)
    return rev


def _dump(obj: dict) -> str:
    import json

    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def training_version_name(annotation_version: str, digest: str) -> str:
    """The name (and tag) of the training version of ``annotation_version`` with parameter hash ``digest``."""
    return f"training-{annotation_version}-{digest[:10]}"


def _fetch_training_version(repo: DatasetRepo, existing: dict, out_dir: Path | None) -> TrainingVersion:
    """Check out and pull the recorded training version ``existing`` (a metadata row)."""
    name = existing["name"]
    checkout = repo.checkout(name)
    if checkout.rev != existing["git_rev"]:
        raise DatasetRepoError(
            f"training version {name!r}: the tag on {repo.origin} points at {checkout.rev[:12]}, the metadata store "
            f"recorded {existing['git_rev'][:12]}; a tag was moved"
        )
    data = f"{TRAINING_DIR}/{name}"
    repo.pull(checkout, data)
    log.info("training version %s exists; fetched it", name)
    return _deliver(
        TrainingVersion(
            name,
            existing["annotation_version"],
            checkout.rev,
            checkout.path / data,
            existing.get("counts") or {},
            created=False,
        ),
        out_dir,
    )


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
    COCO with the seeded split (:func:`alpr.data.coco.split_of`), then ``dvc add`` + push, git commit, and in one
    transaction: metadata rows, tag push, commit (see the module docstring).

    Args:
        settings: backends.
        annotation_version: tag of the dataset repository.
        fractions: train/val/test fractions (sum to 1).
        seed: split seed.
        out_dir: where to copy the COCO dataset for the caller (e.g. a KFP Dataset artifact); when None the
            dataset stays in the working copy (``TrainingVersion.path``).
        progress: show progress bars.

    Raises:
        DatasetRepoError: the version is not registered, its tag does not exist or was moved, or git/DVC fail.
        InvalidAnnotations: a labelme file of the version is broken (every problem is listed); nothing is
            recorded.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    coco.split_of("probe", seed, fractions)  # validates the fractions before any side effect
    store = MetadataStore(settings.db_url)
    store.create_schema()
    registered = store.get_annotation_version(annotation_version)
    if registered is None:
        raise DatasetRepoError(f"annotation version {annotation_version!r} is not registered in the metadata store")
    repo = DatasetRepo(settings)
    digest = params_hash(
        {
            "annotation_version": annotation_version,
            "fractions": list(fractions),
            "seed": seed,
            "converter": CONVERTER_VERSION,
        }
    )
    name = training_version_name(annotation_version, digest)
    with repo.locked():
        existing = store.find_training_version(annotation_version, digest)
        if existing is not None:
            if repo.resolve(name) is None:
                raise DatasetRepoError(
                    f"training version {name!r} is recorded in the metadata store but its tag is missing on "
                    f"{repo.origin}; restore the tag at {existing['git_rev']} or remove the row"
                )
            return _fetch_training_version(repo, existing, out_dir)

        checkout = repo.checkout(annotation_version)
        if checkout.rev != registered["git_rev"]:
            raise DatasetRepoError(
                f"annotation version {annotation_version!r}: the tag on {repo.origin} points at {checkout.rev[:12]}, "
                f"the metadata store registered {registered['git_rev'][:12]}; a tag was moved"
            )
        repo.pull(checkout, ANNOTATIONS_DIR)
        report = _validate(checkout.path / ANNOTATIONS_DIR, f"annotation version {annotation_version}", progress)
        data = f"{TRAINING_DIR}/{name}"
        target = checkout.path / data
        shutil.rmtree(target, ignore_errors=True)
        counts = coco.write_coco_dataset(report.files, target, seed, fractions)
        assignment = coco.split_assignment(report.files, seed, fractions)
        try:
            rev = _publish(
                store,
                repo,
                checkout,
                data_path=data,
                tag=name,
                message=f"Training version {name}",
                branch=None,
                write_rows=lambda tx, rev: tx.add_training_version(
                    name,
                    annotation_version,
                    params_hash=digest,
                    git_rev=rev,
                    seed=seed,
                    fractions=fractions,
                    counts=counts,
                    splits=assignment,
                ),
                rows_committed=lambda: store.find_training_version(annotation_version, digest) is not None,
            )
        except AlreadyExists:
            # Another run recorded the same version meanwhile (its rows committed first): use that one.
            existing = store.find_training_version(annotation_version, digest)
            if existing is None:
                raise
            return _fetch_training_version(repo, existing, out_dir)
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
