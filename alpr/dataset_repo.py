"""Dataset versions in a git repository (gitpython) with the images in DVC.

Layout of the dataset repository::

    .dvc/config               the DVC remote (committed, so every tagged revision can be pulled)
    annotations/              labelme JSON + images of the current annotation version (DVC-tracked)
    annotations.dvc
    training/<name>/          a training version: COCO ``annotations/{train,val,test}.json`` + ``images/``
    training/<name>.dvc       (DVC-tracked; images share content hashes with ``annotations/``, so DVC
                              stores them once)

Tags: an annotation version is the tag ``<name>`` (e.g. ``annotations-v1``) on the ``main`` branch; a
training version is the tag ``<training name>`` on a commit whose parent is its annotation version's commit.

Atomicity: every publishing step runs inside one metadata-store transaction. The rows are written first, then
``dvc push``, the git commit, tag and push; any failure raises, rolls the rows back, and leaves no tag on the
origin (a tag pushed before a later failure is deleted again). DVC objects pushed before a failure stay in the
remote, where they are content-addressed and harmless. Commits are made with a fixed date derived from their
inputs, so a step killed after pushing its tag re-creates the *same* commit on re-run and the push is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import git

from alpr.settings import Settings

log = logging.getLogger(__name__)

#: Name of the DVC remote written into the dataset repository's config.
DVC_REMOTE_NAME = "storage"
#: Folder (inside the dataset repository) of the current annotation version.
ANNOTATIONS_DIR = "annotations"
#: Folder (inside the dataset repository) holding training versions.
TRAINING_DIR = "training"
#: Author of the commits this project makes.
BOT = git.Actor("alpr-pipeline", "alpr-pipeline@localhost")
#: Fixed commit time for reproducible commits (seconds since the epoch, UTC).
_EPOCH = 1_700_000_000


class DatasetRepoError(RuntimeError):
    """A git or DVC operation on the dataset repository failed; the message names the repository and step."""


@dataclass(frozen=True)
class Checkout:
    """A working copy of the dataset repository at one revision.

    Attributes:
        path: the working tree.
        rev: the full commit SHA checked out.
    """

    path: Path
    rev: str


def _dvc_repo(path: Path):
    from dvc.repo import Repo  # heavy import, only when DVC is used

    return Repo(str(path))


def _configure_dvc_remote(path: Path, remote_url: str, *, level: str) -> None:
    """Point the DVC remote ``storage`` at ``remote_url`` in the repo (``level`` 'repo') or config.local."""
    with _dvc_repo(path) as repo:
        with repo.config.edit(level) as conf:
            conf["remote"][DVC_REMOTE_NAME] = {"url": remote_url}
            conf["core"]["remote"] = DVC_REMOTE_NAME
            if level == "repo":
                conf["core"]["autostage"] = True


def _fixed_date(*parts: str) -> str:
    """A deterministic commit date (ISO 8601, UTC) derived from ``parts``: same inputs, same commit SHA."""
    offset = int(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:6], 16)
    return f"{_EPOCH + offset} +0000"


def _push(repo: git.Repo, *refspecs: str) -> None:
    """Push ``refspecs`` to origin in one atomic push (all refs update or none); raise
    :class:`DatasetRepoError` on rejection (gitpython does not)."""
    try:
        infos = repo.remote("origin").push(list(refspecs), atomic=True)
        infos.raise_if_error()
    except git.GitCommandError as exc:
        raise DatasetRepoError(f"git push {' '.join(refspecs)} to {repo.remote('origin').url} failed: {exc}") from exc
    for info in infos:
        if info.flags & (info.REJECTED | info.REMOTE_REJECTED | info.ERROR):
            raise DatasetRepoError(f"git push {info.local_ref or ''} rejected by origin: {info.summary.strip()}")


class DatasetRepo:
    """The dataset repository of :class:`~alpr.settings.Settings`: clone, check out, pull, publish.

    Args:
        settings: ``dataset_repo`` (origin URL or path), ``dvc_remote`` and ``cache_dir`` are used.

    The working copy lives in ``<cache_dir>/dataset``; it is reset to the requested revision before every use,
    so a copy left dirty by a killed step is harmless.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.origin = settings.dataset_repo
        self.path = Path(settings.cache_dir) / "dataset"

    # ---------------------------------------------------------------- set-up
    def init_origin(self) -> bool:
        """Create the origin as a bare repository with a first commit holding the DVC config.

        Only for a local origin (the embedded default). Returns False when it already exists.

        Raises:
            DatasetRepoError: the origin is a remote URL (create it on your git server instead).
        """
        if not self.settings.is_local_dataset_repo:
            raise DatasetRepoError(f"{self.origin} is not a local path; create the dataset repository on its server")
        origin = Path(self.origin)
        if (origin / "HEAD").exists():
            return False
        git.Repo.init(origin, bare=True, initial_branch="main")
        seed = self.path.parent / "dataset-init"
        shutil.rmtree(seed, ignore_errors=True)
        repo = git.Repo.init(seed, initial_branch="main")
        from dvc.repo import Repo as DvcRepo

        DvcRepo.init(str(seed)).close()
        _configure_dvc_remote(seed, self.settings.dvc_remote, level="repo")
        (seed / "README.md").write_text(
            "# ALPR dataset\n\nAnnotation versions are tags on `main`; training versions are tags made by the "
            "pipeline's Record step. Images are stored with DVC.\n"
        )
        repo.git.add(A=True)
        date = _fixed_date("init", self.origin)
        repo.index.commit("Initialise the dataset repository", author=BOT, committer=BOT, author_date=date, commit_date=date)
        repo.create_remote("origin", str(origin))
        _push(repo, "main:refs/heads/main")
        shutil.rmtree(seed, ignore_errors=True)
        return True

    def _clone(self) -> git.Repo:
        if (self.path / ".git").exists():
            repo = git.Repo(self.path)
            repo.remote("origin").set_url(self.origin)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                repo = git.Repo.clone_from(self.origin, self.path)
            except git.GitCommandError as exc:
                raise DatasetRepoError(f"cannot clone dataset repository {self.origin}: {exc.stderr.strip()}") from exc
        try:
            repo.remote("origin").fetch(tags=True, prune=True, prune_tags=True, force=True)
        except git.GitCommandError as exc:
            raise DatasetRepoError(f"cannot fetch from dataset repository {self.origin}: {exc.stderr.strip()}") from exc
        return repo

    def tag_exists(self, name: str) -> bool:
        """Whether ``name`` is a tag on the origin (fetched fresh)."""
        repo = self._clone()
        return name in {t.name for t in repo.tags}

    def list_tags(self) -> list[str]:
        """All tags on the origin, sorted."""
        return sorted(t.name for t in self._clone().tags)

    def checkout(self, rev: str) -> Checkout:
        """Reset the working copy to ``rev`` (a tag, branch or SHA of origin), discarding local changes.

        Raises:
            DatasetRepoError: ``rev`` does not exist on the origin.
        """
        repo = self._clone()
        target = rev if rev in {t.name for t in repo.tags} else f"origin/{rev}"
        try:
            commit = repo.commit(target)
        except (git.BadName, ValueError) as exc:
            raise DatasetRepoError(f"dataset repository {self.origin} has no tag or branch {rev!r}") from exc
        repo.git.checkout("--force", "--detach", commit.hexsha)
        repo.git.clean("-fdq", "--exclude=.dvc/")
        _configure_dvc_remote(self.path, self.settings.dvc_remote, level="local")
        return Checkout(self.path, commit.hexsha)

    def pull(self, checkout: Checkout, *targets: str) -> None:
        """``dvc pull`` the given paths (relative to the repository) of ``checkout``.

        Raises:
            DatasetRepoError: the remote lacks the data or cannot be reached.
        """
        abs_targets = [str(checkout.path / t) for t in targets]
        try:
            with _dvc_repo(checkout.path) as dvc:
                dvc.pull(targets=abs_targets)
        except Exception as exc:  # DVC raises many unrelated types; name the step and re-raise
            raise DatasetRepoError(f"dvc pull {' '.join(targets)} from {self.settings.dvc_remote} failed: {exc}") from exc

    # ---------------------------------------------------------------- publishing
    def publish(self, checkout: Checkout, *, data_path: str, tag: str, message: str, branch: str | None) -> str:
        """``dvc add`` + ``dvc push`` ``data_path``, commit, tag ``tag`` and push; return the commit SHA.

        Run inside a metadata-store transaction; if anything after the tag push fails, call
        :meth:`delete_tag` before the transaction rolls back.

        Args:
            checkout: working copy whose ``data_path`` holds the new content.
            data_path: folder, relative to the repository, to track with DVC.
            tag: the version's tag (must not exist on origin with another commit).
            message: commit message.
            branch: branch to advance on origin (``main`` for annotation versions), or None.

        Raises:
            DatasetRepoError: DVC add/push fails, or origin rejects the commit or tag.
        """
        repo = git.Repo(checkout.path)
        target = str(checkout.path / data_path)
        try:
            with _dvc_repo(checkout.path) as dvc:
                dvc.add([target])
                dvc.push(targets=[target])
        except Exception as exc:
            raise DatasetRepoError(f"dvc add/push of {data_path} to {self.settings.dvc_remote} failed: {exc}") from exc
        dvc_file = f"{data_path}.dvc"
        gitignore = str(Path(data_path).parent / ".gitignore") if "/" in data_path else ".gitignore"
        repo.git.add(dvc_file, gitignore)
        digest = hashlib.sha256((checkout.path / dvc_file).read_bytes()).hexdigest()
        date = _fixed_date(checkout.rev, tag, digest)
        commit = repo.index.commit(
            message, author=BOT, committer=BOT, author_date=date, commit_date=date,
            parent_commits=[repo.commit(checkout.rev)],
        )
        existing = {t.name: t for t in repo.tags}
        if tag in existing and existing[tag].commit.hexsha != commit.hexsha:
            raise DatasetRepoError(f"tag {tag!r} already exists in {self.origin} at another commit")
        if tag not in existing:
            repo.create_tag(tag, ref=commit, message=message)
        refspecs = [f"refs/tags/{tag}:refs/tags/{tag}"]
        if branch:
            refspecs.append(f"{commit.hexsha}:refs/heads/{branch}")
        _push(repo, *refspecs)
        return commit.hexsha

    def delete_tag(self, tag: str) -> None:
        """Remove ``tag`` from origin and the working copy (compensation after a failed step); never raises."""
        try:
            repo = git.Repo(self.path)
            repo.remote("origin").push([f":refs/tags/{tag}"])
            if tag in {t.name for t in repo.tags}:
                repo.delete_tag(tag)
        except Exception as exc:  # best effort: report, do not mask the original error
            log.warning("could not remove tag %s from %s: %s", tag, self.origin, exc)


def params_hash(payload: dict) -> str:
    """SHA-256 (hex) of ``payload`` serialised as canonical JSON (sorted keys): identifies a step's inputs."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
