"""Dataset versions in a git repository (gitpython) with the images in DVC.

Layout of the dataset repository::

    .dvc/config               the DVC remote's URL only (committed, so every tagged revision can be pulled)
    annotations/              labelme JSON + images of the current annotation version (DVC-tracked)
    annotations.dvc
    training/<name>/          a training version: COCO ``annotations/{train,val,test}.json`` + ``images/``
    training/<name>.dvc       (DVC-tracked; images share content hashes with ``annotations/``, so DVC
                              stores them once)

Tags: an annotation version is the tag ``<name>`` (e.g. ``annotations-v1``) on the ``main`` branch; a
training version is the tag ``<training name>`` on a commit whose parent is its annotation version's commit.

DVC configuration, two levels:

- ``.dvc/config`` (committed, level ``repo``): only the remote ``storage`` with its URL (``gs://bucket/dvc`` or a
  folder) and ``core.remote``. Nothing that depends on where the code runs, and never a credential.
- ``.dvc/config.local`` (git-ignored, level ``local``): rewritten from scratch on every :meth:`DatasetRepo.checkout`
  from :func:`remote_config`: the URL of ``Settings.dvc_remote`` (so a revision committed with an older URL is
  read from the current remote) plus, for a ``gs://`` remote, what the environment needs: with
  ``STORAGE_EMULATOR_HOST`` set, ``endpointurl`` (that host) and ``allow_anonymous_login``; with
  ``GOOGLE_APPLICATION_CREDENTIALS`` set, ``credentialpath`` (the key file's *path*, never its content). Without
  either, gcsfs uses application default credentials (workload identity). ``core.site_cache_dir`` points into the
  cache folder, so DVC writes nothing outside it (pods may have a read-only root file system).

Atomicity (see :mod:`alpr.data.versions`): a version is published by :meth:`DatasetRepo.commit_version` (``dvc add`` +
``dvc push``, a git commit and a local tag; nothing visible to readers yet) and :meth:`DatasetRepo.push_version`
(one atomic ``git push`` of the tag, and of ``main`` for annotation versions). The caller writes the metadata rows
in a transaction *before* the push and commits it right after; if the push or the commit fails, the tag is removed
again with :meth:`DatasetRepo.delete_tag` (a compare-and-delete: only the tag object this working copy pushed).
DVC objects pushed before a failure stay in the remote, where they are content-addressed and harmless.
Commits and tags are made with fixed dates and a fixed identity derived from their inputs, so a step killed after
pushing its tag re-creates the *same* commit and tag object on re-run and the push is a no-op.

Kill safety of the working copy (``<cache_dir>/dataset``): every operation holds an exclusive ``flock`` on
``<cache_dir>/dataset.lock`` (released by the kernel when a process dies), so the lock files git and DVC leave
behind when a process is killed (``.git/index.lock``, ``.git/HEAD.lock``, a torn ``.dvc/tmp/rwlock`` ...) are known
to be stale and are removed; a working copy that still cannot be used is deleted and cloned again (clones are made in
a temporary folder and renamed into place). :meth:`DatasetRepo.checkout` resets the tree to exactly the commit
(``git clean -x``), keeping only ``.dvc/`` (the DVC cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from alpr.settings import Settings

try:  # POSIX only; elsewhere the working copy is not protected against concurrent processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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
#: Environment variables read by :func:`remote_config` (never their values' content for the key file).
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class DatasetRepoError(RuntimeError):
    """A git or DVC operation on the dataset repository failed; the message names the repository and step."""


class TagConflict(DatasetRepoError):
    """The tag a step would make already exists on the origin at another commit."""


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


def remote_config(remote_url: str) -> dict[str, object]:
    """The DVC remote section (``[remote "storage"]``) this environment needs for ``remote_url``.

    Always ``url``; for a ``gs://`` remote also ``endpointurl`` + ``allow_anonymous_login`` when
    ``$STORAGE_EMULATOR_HOST`` is set (an emulator: ``host:port`` gets ``http://``), and ``credentialpath`` when
    ``$GOOGLE_APPLICATION_CREDENTIALS`` is set (the path of the key file, not its content). These go into
    ``.dvc/config.local`` only, never into the committed ``.dvc/config``.
    """
    section: dict[str, object] = {"url": remote_url}
    if not remote_url.startswith("gs://"):
        return section
    emulator = os.environ.get(EMULATOR_ENV, "").strip()
    if emulator and emulator != "default":
        section["endpointurl"] = emulator if "://" in emulator else f"http://{emulator}"
        section["allow_anonymous_login"] = True
    key_file = os.environ.get(CREDENTIALS_ENV, "").strip()
    if key_file:
        section["credentialpath"] = str(Path(key_file).expanduser().absolute())
    return section


def _configure_dvc_remote(path: Path, remote_url: str, *, level: str, site_cache_dir: Path | None = None) -> None:
    """Write the DVC remote ``storage``.

    ``level="repo"``: the committed ``.dvc/config`` gets the URL only (plus ``core.remote`` and ``autostage``).
    ``level="local"``: ``.dvc/config.local`` is rewritten from scratch with :func:`remote_config` (and
    ``core.site_cache_dir``), so stale options of an earlier environment never linger and a file torn by a killed
    process never breaks DVC.
    """
    if level == "repo":
        with _dvc_repo(path) as repo, repo.config.edit("repo") as conf:
            conf["remote"][DVC_REMOTE_NAME] = {"url": remote_url}
            conf["core"]["remote"] = DVC_REMOTE_NAME
            conf["core"]["autostage"] = True
        return
    if level != "local":
        raise ValueError(f"unknown DVC config level {level!r}")
    from dvc.config import Config

    dvc_dir = path / ".dvc"
    (dvc_dir / "config.local").unlink(missing_ok=True)
    config = Config(dvc_dir=str(dvc_dir))
    with config.edit("local") as conf:
        conf["remote"][DVC_REMOTE_NAME] = remote_config(remote_url)
        conf["core"]["remote"] = DVC_REMOTE_NAME
        if site_cache_dir is not None:
            conf["core"]["site_cache_dir"] = str(site_cache_dir)


def _fixed_date(*parts: str) -> str:
    """A deterministic commit date (ISO 8601, UTC) derived from ``parts``: same inputs, same commit SHA."""
    offset = int(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:6], 16)
    return f"{_EPOCH + offset} +0000"


def _git_error(exc: git.GitCommandError) -> str:
    return (exc.stderr or str(exc)).strip()


def _push(repo: git.Repo, *refspecs: str) -> None:
    """Push ``refspecs`` to origin in one atomic push (all refs update or none); raise
    :class:`DatasetRepoError` on rejection (gitpython does not)."""
    progress = git.RemoteProgress()  # collects the "remote: …" lines (a hook's reason for refusing)

    def said() -> str:
        lines = [ln[7:].strip() for ln in progress.other_lines + progress.error_lines if ln.startswith("remote:")]
        lines = [ln for ln in lines if ln]
        return f"; the origin said: {' | '.join(lines)}" if lines else ""

    try:
        infos = repo.remote("origin").push(list(refspecs), atomic=True, progress=progress)
        infos.raise_if_error()
    except git.GitCommandError as exc:
        raise DatasetRepoError(
            f"git push {' '.join(refspecs)} to {repo.remote('origin').url} failed: {_git_error(exc)}{said()}"
        ) from exc
    for info in infos:
        if info.flags & (info.REJECTED | info.REMOTE_REJECTED | info.ERROR):
            raise DatasetRepoError(
                f"git push {info.local_ref or ''} rejected by origin: {info.summary.strip()}{said()}"
            )


def _has_main(origin: Path) -> bool:
    """Whether the local bare repository ``origin`` exists with a ``main`` branch."""
    if not (origin / "HEAD").exists():
        return False
    try:
        git.Repo(origin).git.rev_parse("--verify", "--quiet", "refs/heads/main")
        return True
    except git.GitError:
        return False


class _WorkingCopyLock:
    """A re-entrant (per process) exclusive ``flock`` on one file, shared by every DatasetRepo of that file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rlock = threading.RLock()
        self._depth = 0
        self._fh = None

    def __enter__(self) -> None:
        self._rlock.acquire()
        try:
            if self._depth == 0 and fcntl is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(self.path, "a+b")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("waiting for %s: another process is using the dataset working copy", self.path)
                    fcntl.flock(fh, fcntl.LOCK_EX)
                except BaseException:
                    fh.close()
                    raise
                self._fh = fh
            self._depth += 1
        except BaseException:
            self._rlock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fh is not None:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None
        self._rlock.release()


_LOCKS: dict[str, _WorkingCopyLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> _WorkingCopyLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), _WorkingCopyLock(path))


def _remove_stale_locks(path: Path) -> None:
    """Remove the lock files a killed git or DVC process left in the working copy ``path``.

    Only called while holding the working copy's flock: no live process of ours can own them.
    """
    git_dir = path / ".git"
    for lock in [*git_dir.glob("*.lock"), *(git_dir / "refs").rglob("*.lock")]:
        if lock.is_file():
            log.warning("removing %s, left behind by an interrupted git process", lock)
            lock.unlink(missing_ok=True)
    # DVC keeps its read/write lock table in this JSON file (entries of dead processes it drops itself); a process
    # killed while rewriting it leaves it torn, and DVC then refuses to run.
    rwlock = path / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(rwlock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (ValueError, OSError):
        log.warning("removing %s, torn by an interrupted DVC process", rwlock)
        rwlock.unlink(missing_ok=True)


class DatasetRepo:
    """The dataset repository of :class:`~alpr.settings.Settings`: clone, check out, pull, publish.

    Args:
        settings: ``dataset_repo`` (origin URL or path), ``dvc_remote`` and ``cache_dir`` are used.

    The working copy lives in ``<cache_dir>/dataset``; it is reset to the requested revision before every use,
    so a copy left dirty (or locked) by a killed step is harmless. Hold :meth:`locked` around a sequence of calls
    that must not interleave with another process using the same cache folder (every method also takes it).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.origin = settings.dataset_repo
        self.path = Path(settings.cache_dir) / "dataset"
        self._lock = _lock_for(Path(settings.cache_dir) / "dataset.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the working copy's exclusive lock (re-entrant within this process)."""
        with self._lock:
            yield

    # ---------------------------------------------------------------- set-up
    def init_origin(self) -> bool:
        """Create the origin as a bare repository with a first commit holding the DVC config.

        Only for a local origin (the embedded default). Returns False when it already exists (with ``main``).

        Raises:
            DatasetRepoError: the origin is a remote URL (create it on your git server instead).
        """
        if not self.settings.is_local_dataset_repo:
            raise DatasetRepoError(f"{self.origin} is not a local path; create the dataset repository on its server")
        origin = Path(self.origin)
        if _has_main(origin):
            return False
        with self.locked():
            if _has_main(origin):
                return False
            # (An origin without main is one whose initialisation was interrupted: initialise it again.)
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
            repo.index.commit(
                "Initialise the dataset repository", author=BOT, committer=BOT, author_date=date, commit_date=date
            )
            repo.create_remote("origin", str(origin))
            _push(repo, "main:refs/heads/main")
            shutil.rmtree(seed, ignore_errors=True)
        return True

    def _open_working_copy(self) -> git.Repo | None:
        """The existing working copy, with stale locks removed; None (and the folder gone) if it is unusable."""
        if not self.path.exists():
            return None
        if (self.path / ".git").is_dir():
            _remove_stale_locks(self.path)
            try:
                repo = git.Repo(self.path)
                repo.remote("origin").set_url(self.origin)
                repo.git.rev_parse("--verify", "HEAD")
                return repo
            except (git.GitError, ValueError, OSError) as exc:
                log.warning("dataset working copy %s is unusable (%s); cloning it again", self.path, exc)
        shutil.rmtree(self.path)
        return None

    def _clone(self) -> git.Repo:
        with self.locked():
            repo = self._open_working_copy()
            if repo is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for leftover in self.path.parent.glob(".dataset-clone-*"):  # clones of killed processes
                    shutil.rmtree(leftover, ignore_errors=True)
                tmp = self.path.parent / f".dataset-clone-{os.getpid()}"
                try:
                    git.Repo.clone_from(self.origin, tmp)
                except git.GitCommandError as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise DatasetRepoError(f"cannot clone dataset repository {self.origin}: {_git_error(exc)}") from exc
                os.rename(tmp, self.path)  # a clone is never seen half-made
                repo = git.Repo(self.path)
            try:
                repo.remote("origin").fetch(tags=True, prune=True, prune_tags=True, force=True)
            except git.GitCommandError as exc:
                raise DatasetRepoError(
                    f"cannot fetch from dataset repository {self.origin}: {_git_error(exc)}"
                ) from exc
            return repo

    def tag_exists(self, name: str) -> bool:
        """Whether ``name`` is a tag on the origin (fetched fresh)."""
        repo = self._clone()
        return name in {t.name for t in repo.tags}

    def list_tags(self) -> list[str]:
        """All tags on the origin, sorted."""
        return sorted(t.name for t in self._clone().tags)

    def resolve(self, rev: str) -> str | None:
        """The commit SHA of tag or branch ``rev`` on the origin (fetched fresh), or None."""
        repo = self._clone()
        try:
            return self._commit(repo, rev).hexsha
        except DatasetRepoError:
            return None

    def resolve_parents(self, sha: str) -> list[str]:
        """The parent commit SHAs of commit ``sha`` (as fetched from origin; empty for a root commit)."""
        repo = self._clone()
        return [p.hexsha for p in self._commit(repo, sha).parents]

    def _commit(self, repo: git.Repo, rev: str) -> git.Commit:
        if rev in {t.name for t in repo.tags}:
            target = f"refs/tags/{rev}"
        elif _SHA_RE.match(rev):
            target = rev
        else:
            target = f"refs/remotes/origin/{rev}"
        try:
            return repo.commit(target)
        except (git.BadName, ValueError) as exc:
            raise DatasetRepoError(f"dataset repository {self.origin} has no tag or branch {rev!r}") from exc

    def checkout(self, rev: str) -> Checkout:
        """Reset the working copy to ``rev`` (a tag, branch or commit SHA of origin), discarding local changes.

        The tree is made exactly the commit's (untracked and ignored files removed; ``.dvc/`` with the DVC cache
        kept) and ``.dvc/config.local`` is rewritten for this environment (see the module docstring).

        Raises:
            DatasetRepoError: ``rev`` does not exist on the origin.
        """
        with self.locked():
            repo = self._clone()
            commit = self._commit(repo, rev)
            try:
                self._reset(repo, commit.hexsha)
            except git.GitCommandError as exc:
                log.warning("cannot reset %s to %s (%s); cloning it again", self.path, rev, _git_error(exc))
                shutil.rmtree(self.path)
                repo = self._clone()
                self._reset(repo, commit.hexsha)
            _configure_dvc_remote(
                self.path,
                self.settings.dvc_remote,
                level="local",
                site_cache_dir=Path(self.settings.cache_dir) / "dvc-site-cache",
            )
            return Checkout(self.path, commit.hexsha)

    @staticmethod
    def _reset(repo: git.Repo, sha: str) -> None:
        repo.git.checkout("--force", "--detach", sha)
        repo.git.clean("-ffdxq", "--exclude=/.dvc/")

    def pull(self, checkout: Checkout, *targets: str) -> None:
        """``dvc pull`` the given paths (relative to the repository) of ``checkout``.

        Raises:
            DatasetRepoError: the remote lacks the data or cannot be reached.
        """
        abs_targets = [str(checkout.path / t) for t in targets]
        with self.locked():
            try:
                with _dvc_repo(checkout.path) as dvc:
                    dvc.pull(targets=abs_targets)
            except Exception as exc:  # DVC raises many unrelated types; name the step and re-raise
                raise DatasetRepoError(
                    f"dvc pull {' '.join(targets)} from {self.settings.dvc_remote} failed: {exc}"
                ) from exc

    # ---------------------------------------------------------------- publishing
    def commit_version(self, checkout: Checkout, *, data_path: str, tag: str, message: str) -> str:
        """``dvc add`` + ``dvc push`` ``data_path``, commit it on top of ``checkout.rev`` and tag it locally.

        Nothing is visible on the origin's refs yet (only content-addressed DVC objects in the remote); call
        :meth:`push_version` next. The commit and the annotated tag have fixed dates and identity, so the same
        inputs give the same SHAs (a tag left on the origin by a killed run is re-used as is).

        Returns:
            the commit SHA.

        Raises:
            DatasetRepoError: DVC add/push fails.
            TagConflict: ``tag`` exists on origin at another commit.
        """
        with self.locked():
            repo = git.Repo(checkout.path)
            target = str(checkout.path / data_path)
            try:
                with _dvc_repo(checkout.path) as dvc:
                    dvc.add([target])
                    dvc.push(targets=[target])
            except Exception as exc:
                raise DatasetRepoError(
                    f"dvc add/push of {data_path} to {self.settings.dvc_remote} failed: {exc}"
                ) from exc
            dvc_file = f"{data_path}.dvc"
            gitignore = str(Path(data_path).parent / ".gitignore") if "/" in data_path else ".gitignore"
            repo.git.add(dvc_file, gitignore)
            digest = hashlib.sha256((checkout.path / dvc_file).read_bytes()).hexdigest()
            date = _fixed_date(checkout.rev, tag, digest)
            commit = repo.index.commit(
                message,
                author=BOT,
                committer=BOT,
                author_date=date,
                commit_date=date,
                parent_commits=[repo.commit(checkout.rev)],
            )
            existing = {t.name: t for t in repo.tags}
            if tag in existing and existing[tag].commit.hexsha != commit.hexsha:
                raise TagConflict(
                    f"tag {tag!r} already exists in {self.origin} at commit {existing[tag].commit.hexsha[:12]}, "
                    f"not at the commit this step makes ({commit.hexsha[:12]})"
                )
            if tag not in existing:
                # An annotated tag with a fixed identity and date: no git identity needs to be configured (pods
                # have none) and the tag object is the same on every re-run.
                env = {"GIT_COMMITTER_NAME": BOT.name, "GIT_COMMITTER_EMAIL": BOT.email, "GIT_COMMITTER_DATE": date}
                repo.git.tag("-a", "-m", message, tag, commit.hexsha, env=env)
            return commit.hexsha

    def push_version(self, tag: str, commit: str, *, branch: str | None) -> None:
        """Push ``tag`` (and ``commit`` to ``branch`` when given) to origin in one atomic push.

        Raises:
            DatasetRepoError: origin rejects the push (e.g. ``branch`` moved meanwhile); then nothing changed.
        """
        with self.locked():
            repo = git.Repo(self.path)
            refspecs = [f"refs/tags/{tag}:refs/tags/{tag}"]
            if branch:
                refspecs.append(f"{commit}:refs/heads/{branch}")
            _push(repo, *refspecs)

    def delete_tag(
        self, tag: str, *, branch: str | None = None, restore: str | None = None, expected: str | None = None
    ) -> None:
        """Remove ``tag`` from origin and the working copy (compensation after a failed step); never raises.

        A compare-and-delete: the origin's tag is removed only while it is still the tag object of this working
        copy (``git push --force-with-lease``), so a tag someone else made is never touched. With ``branch``,
        ``restore`` and ``expected``, the same atomic push also moves ``branch`` back from ``expected`` (the
        commit the failed step pushed) to ``restore`` (its head before), again only if nobody moved it since.
        A tag that never reached the origin (the push was refused) is only removed locally.
        """
        with self.locked():
            try:
                repo = git.Repo(self.path)
                if tag not in {t.name for t in repo.tags}:
                    return
                ours = repo.git.rev_parse(f"refs/tags/{tag}")
                on_origin = bool(repo.git.ls_remote("origin", f"refs/tags/{tag}").strip())
                if on_origin:
                    args = ["--atomic", f"--force-with-lease=refs/tags/{tag}:{ours}"]
                    refspecs = [f":refs/tags/{tag}"]
                    if branch and restore and expected:
                        args.append(f"--force-with-lease=refs/heads/{branch}:{expected}")
                        refspecs.append(f"{restore}:refs/heads/{branch}")
                    try:
                        repo.git.push(*args, "origin", *refspecs)
                    except git.GitCommandError as exc:
                        log.warning("tag %s not removed from %s: %s", tag, self.origin, _git_error(exc))
                repo.delete_tag(tag)
            except Exception as exc:  # best effort: report, do not mask the original error
                log.warning("could not remove tag %s from %s: %s", tag, self.origin, exc)


def params_hash(payload: dict) -> str:
    """SHA-256 (hex) of ``payload`` serialised as canonical JSON (sorted keys): identifies a step's inputs."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
