"""``python -m dataset_tools register``: publish a labelme folder as a new annotation version.

The work is :func:`alpr.data.versions.register_annotation_version` (validate, ``dvc add`` + ``dvc push``, git commit
and tag pushed atomically with ``main``, metadata rows in one transaction; all or nothing). This module is the
command line around it: backend settings from flags over the ``ALPR_*`` environment, a version-name check, and one
paragraph per failure naming its cause, with the password of every URL hidden.

The origin's refs (``git ls-remote``) are read before the registration; after a failure they are read again and
the message says plainly whether the tag and ``main`` are as they were (they should be), instead of trusting it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Name of the command, used in messages.
PROG = "dataset_tools register"
#: Longest version name the metadata store holds (``annotation_versions.name``).
MAX_NAME_LENGTH = 128
#: A version name: a git tag made of letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?P<at>@)")


# ------------------------------------------------------------------------------------------ shared with versions


def add_backend_options(parser: argparse.ArgumentParser, *, dataset: bool) -> None:
    """Add ``--workspace`` and ``--db-url`` (and, when ``dataset``, ``--dataset-repo`` and ``--dvc-remote``)."""
    group = parser.add_argument_group("backends (each defaults to its ALPR_* environment variable)")
    group.add_argument(
        "--workspace",
        type=Path,
        metavar="W",
        help="workspace folder of the embedded defaults, clones and caches (default: $ALPR_WORKSPACE or ./.alpr)",
    )
    group.add_argument(
        "--db-url",
        metavar="URL",
        help="metadata store: sqlite:///path/metadata.db or mysql+pymysql://user@host:3306/db; the password "
        "comes from $ALPR_DB_PASSWORD (default: $ALPR_DB_URL or an SQLite file in the workspace)",
    )
    if dataset:
        group.add_argument(
            "--dataset-repo",
            metavar="URL",
            help="git URL or local path of the dataset repository; a local path is created on first use "
            "(default: $ALPR_DATASET_REPO or <workspace>/dataset.git)",
        )
        group.add_argument(
            "--dvc-remote",
            metavar="URL",
            help="DVC remote of the images: a folder or gs://bucket/path "
            "(default: $ALPR_DVC_REMOTE or <workspace>/dvc-remote)",
        )


def settings_from_args(args: argparse.Namespace):
    """Return :class:`alpr.settings.Settings` from the ``ALPR_*`` environment, overridden by the flags given.

    Raises:
        pydantic.ValidationError: a setting has an invalid value.
    """
    from alpr.settings import load_settings

    names = ("workspace", "db_url", "dataset_repo", "dvc_remote")
    return load_settings(**{n: getattr(args, n, None) for n in names})


def secrets_of(*urls: str | None) -> list[str]:
    """Return the secrets to hide in messages: passwords in ``urls`` and ``$ALPR_DB_PASSWORD``."""
    import os

    found = [m.group("secret") for url in urls if url for m in _URL_PASSWORD.finditer(url)]
    env = os.environ.get("ALPR_DB_PASSWORD")
    if env:
        found.append(env)
    return [s for s in found if s]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with URL passwords (``scheme://user:PASSWORD@``) and every one of ``secrets`` as ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<at>", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def fail(prog: str, message: str, secrets: Iterable[str] = ()) -> int:
    """Print ``<prog>: error: <message>`` (passwords hidden) to stderr and return exit code 1."""
    print(f"{prog}: error: {redact(message, secrets)}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------------------ parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``register`` sub-command on ``subparsers`` and return its parser."""
    parser = subparsers.add_parser(
        "register",
        help="publish a labelme folder as a new annotation version (DVC + git tag + metadata rows)",
        description=(
            "Validate the labelme folder DIR (every file, every problem listed), then publish it as annotation "
            "version NAME: the normalised files and images are added to DVC and pushed, committed on 'main' and "
            "tagged NAME in the dataset repository, and recorded in the metadata store. All or nothing: on any "
            "failure there are no rows, no tag and no new commit, and the same command can simply be run again. "
            "Exit status: 0 registered, 1 failed (the message names the cause), 2 usage error."
        ),
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="folder of labelme JSON files and their images")
    parser.add_argument(
        "--name",
        required=True,
        help=f"the new version's name, also its git tag (e.g. annotations-v2): letters, digits, '.', '_', '-', "
        f"starting with a letter or digit, at most {MAX_NAME_LENGTH} characters",
    )
    parser.add_argument(
        "--description", default="", metavar="TEXT", help="free text stored with the version (default: empty)"
    )
    add_backend_options(parser, dataset=True)
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    return parser


# ------------------------------------------------------------------------------------------ checks


def check_version_name(name: str) -> str | None:
    """Return why ``name`` cannot be a version name (a git tag and a metadata key), or None when it can."""
    if not name:
        return "the version name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the version name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not NAME_PATTERN.match(name):
        return (
            f"the version name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if ".." in name or name.endswith((".", ".lock")):
        return f"the version name {name!r} is not a valid git tag (no '..', no trailing '.' or '.lock')"
    return None


def remote_refs(url: str) -> dict[str, str] | None:
    """Return ``{ref: sha}`` of the tags and ``main`` of the git repository at ``url`` (``git ls-remote``).

    Returns ``{}`` for a local path that does not exist yet (it is created by the first registration) and None
    when the repository cannot be read.
    """
    import git

    if "://" not in url and "@" not in url and not (Path(url) / "HEAD").exists():
        return {}
    try:
        out = git.Git().ls_remote(url, "refs/heads/main", "refs/tags/*")
    except git.GitCommandError:
        return None
    refs = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            refs[ref] = sha
    return refs


def _aftermath(settings: Any, name: str, before: dict[str, str] | None) -> str:
    """Describe what a failed registration left on the origin, comparing its refs with ``before``."""
    after = remote_refs(settings.dataset_repo)
    if before is None or after is None:
        return "The dataset repository could not be read to check what the failure left behind."
    tag = f"refs/tags/{name}"
    problems = []
    if tag in after and tag not in before:
        problems.append(f"the tag {name!r} is on the origin (remove it: git push origin :{tag})")
    # A new local origin is created with an initial commit on main before anything can fail: not a version.
    if "refs/heads/main" in before and after.get("refs/heads/main") != before["refs/heads/main"]:
        problems.append(
            f"the origin's main moved from {before.get('refs/heads/main')} to {after.get('refs/heads/main')}"
        )
    if problems:
        return "WARNING, not all was undone: " + "; ".join(problems) + "."
    return "Nothing was published: no metadata rows written, no new tag and main unchanged on the origin."


# ------------------------------------------------------------------------------------------ run


def _register(args: argparse.Namespace, settings: Any, secrets: list[str]) -> int:
    """Run the registration; map every failure onto one message and exit code 1."""
    import git
    import sqlalchemy as sa

    from alpr.data.repo import DatasetRepoError
    from alpr.data.versions import InvalidAnnotations, register_annotation_version
    from alpr.metadata import AlreadyExists, MetadataConnectionError, MetadataError

    name = args.name
    before = remote_refs(settings.dataset_repo)
    try:
        rev = register_annotation_version(
            settings, args.folder, name, description=args.description, progress=not args.no_progress
        )
    except InvalidAnnotations as exc:
        return fail(
            PROG,
            f"annotation version {name!r} was not registered: {len(exc.report.bad_files())} labelme "
            f"file(s) have problems; fix every one listed below and run the command again.\n"
            f"{exc.report.format()}",
            secrets,
        )
    except AlreadyExists as exc:
        return fail(PROG, f"{exc}. {_aftermath(settings, name, before)} Choose another --name.", secrets)
    except MetadataConnectionError as exc:
        return fail(
            PROG,
            f"{exc}. {_aftermath(settings, name, before)} Check the URL and that the database is "
            "up, then run the same command again.",
            secrets,
        )
    except (DatasetRepoError, git.GitError) as exc:
        return fail(
            PROG,
            f"git or DVC failed while publishing {name!r} to {settings.dataset_repo} "
            f"(DVC remote {settings.dvc_remote}): {exc}. {_aftermath(settings, name, before)} "
            "Fix the cause and run the same command again.",
            secrets,
        )
    except (MetadataError, sa.exc.SQLAlchemyError) as exc:
        return fail(
            PROG,
            f"the metadata store failed while registering {name!r}: {exc}. "
            f"{_aftermath(settings, name, before)} Fix the cause and run the same command again.",
            secrets,
        )
    except (NotADirectoryError, ValueError, OSError) as exc:
        return fail(
            PROG,
            f"annotation version {name!r} was not registered: {exc}. {_aftermath(settings, name, before)}",
            secrets,
        )
    except Exception as exc:
        return fail(
            PROG,
            f"registering {name!r} failed unexpectedly ({type(exc).__name__}: {exc}). "
            f"{_aftermath(settings, name, before)} Run the same command again once the cause is "
            "fixed.",
            secrets,
        )
    _print_success(settings, name, rev)
    return 0


def _print_success(settings: Any, name: str, rev: str) -> None:
    """Print the registered version's name, git revision and image count."""
    from alpr.metadata import MetadataStore

    store = MetadataStore(settings.db_url)
    try:
        row = store.get_annotation_version(name) or {}
    except Exception:
        row = {}
    finally:
        store.dispose()
    print(
        f"registered annotation version {name}: git revision {rev}, {row.get('image_count', '?')} images, "
        f"dataset repository {settings.dataset_repo}, metadata store {store.url_for_display}"
    )


def run(args: argparse.Namespace) -> int:
    """Register the folder; return 0, or 1 after printing one paragraph naming the cause to stderr."""
    secrets = secrets_of(args.db_url, args.dataset_repo, args.dvc_remote)
    why = check_version_name(args.name)
    if why:
        return fail(PROG, f"{why}. Nothing was published.", secrets)
    if not Path(args.folder).is_dir():
        return fail(PROG, f"labelme folder not found: {args.folder}. Nothing was published.", secrets)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        return fail(PROG, f"invalid settings: {exc}", secrets)
    secrets += secrets_of(settings.db_url, settings.dataset_repo, settings.dvc_remote)
    return _register(args, settings, secrets)
