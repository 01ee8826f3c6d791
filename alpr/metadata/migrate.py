"""Schema migrations of the metadata store (Alembic): upgrade, downgrade, current revision, history, checks.

The revisions live in ``alpr/metadata/migrations/versions/`` (shipped in the package); the Alembic configuration
is built here in code, so no ``alembic.ini`` is needed. :func:`upgrade` is what ``alpr db upgrade`` and
:meth:`MetadataStore.create_schema <alpr.metadata.store.MetadataStore.create_schema>` run:

- **one migrator at a time**: on MySQL/MariaDB a named server lock (``GET_LOCK``, one per database, held by the
  session until the upgrade is committed); on SQLite the write lock of the ``BEGIN IMMEDIATE`` transaction that
  the store opens for writing. Steps that start at once and each call ``create_schema()`` therefore wait for each
  other; the second finds the database at head and does nothing.
- **the previous release's databases are adopted**: one created by ``create_schema()`` before migrations has the
  tables but no ``alembic_version``; the baseline revision (``0001``) keeps every table that exists, so the
  database is brought to the baseline with its rows and then upgraded like any other.
- **a database newer than the code** (migrated by a later release) is refused with :class:`MigrationError`
  instead of being touched.

On SQLite the whole upgrade is one transaction (SQLite's DDL is transactional). MySQL/MariaDB commit each DDL
statement implicitly: a revision that fails half-way on MySQL leaves the statements before the failure applied,
and ``alembic_version`` at the last revision that completed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from alpr.metadata.errors import MigrationError
from alpr.metadata.schema import metadata_obj

__all__ = [
    "BASELINE",
    "LOCK_TIMEOUT_S",
    "MIGRATIONS_DIR",
    "MigrationResult",
    "Revision",
    "alembic_config",
    "configure_context",
    "current",
    "differences",
    "downgrade",
    "head",
    "history",
    "migration_lock",
    "new_revision",
    "upgrade",
]

#: The migration environment (``env.py``, ``script.py.mako``, ``versions/``), inside the installed package.
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
#: The first revision: the schema that ``create_schema()`` made before migrations.
BASELINE = "0001"
#: How long :func:`upgrade` waits for another process's migration (MySQL/MariaDB ``GET_LOCK``), in seconds: longer
#: than any migration so far takes; SQLite waits for the store's busy timeout instead.
LOCK_TIMEOUT_S = 300.0
#: Alembic's version table (its default name, stated here once).
VERSION_TABLE = "alembic_version"
#: The MySQL/MariaDB lock of one database (a server-wide name, at most 64 characters: a digest of the database).
_LOCK_NAME_SQL = "CONCAT('alpr_metadata_migrate.', MD5(DATABASE()))"
#: The revision file names: ``NNNN_slug.py``, numbered in order (``alpr db revision`` picks the next number).
_FILE_TEMPLATE = "%(rev)s_%(slug)s"
_REVISION_ID = re.compile(r"\d{4}")


@dataclass(frozen=True)
class Revision:
    """One migration: its ``id`` (``"0001"``...), the revision it follows (None for the baseline), its message,
    and whether it is the newest (``is_head``)."""

    id: str
    down_revision: str | None
    message: str
    is_head: bool


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`upgrade` / :func:`downgrade` did: the revision ``before`` and ``after`` (None: no
    ``alembic_version``, an empty or previous-release database), and whether a previous-release database (tables,
    no ``alembic_version``) was ``adopted``."""

    before: str | None
    after: str | None
    adopted: bool = False

    @property
    def changed(self) -> bool:
        """Whether the revision moved."""
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the metadata store's migrations (no ``alembic.ini``).

    Args:
        connection: handed to ``env.py`` (``config.attributes["connection"]``); needed by every command that
            runs the environment (upgrade, downgrade, autogenerate), not by ``history``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", _FILE_TEMPLATE.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def configure_context(context: Any, connection: Connection) -> None:
    """Configure Alembic's ``context`` (in ``env.py``) for the store's schema on ``connection``.

    Batch mode on SQLite (its ALTER TABLE cannot change a column: Alembic copies the table); types compared by
    autogenerate and :func:`differences`.
    """
    context.configure(**_context_options(connection))


def _context_options(connection: Connection) -> dict[str, Any]:
    return {
        "connection": connection,
        "target_metadata": metadata_obj,
        "render_as_batch": connection.dialect.name == "sqlite",
        "compare_type": True,
        "version_table": VERSION_TABLE,
    }


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision's id (the schema of :mod:`alpr.metadata.schema`)."""
    heads = _script().get_heads()
    if len(heads) != 1:  # two revisions with the same parent: a merge is missing
        raise MigrationError(f"the migrations have {len(heads)} heads {sorted(heads)}: they must form one line")
    return heads[0]


def history() -> list[Revision]:
    """Every revision, oldest first."""
    script = _script()
    heads = set(script.get_heads())
    revisions = [
        Revision(s.revision, s.down_revision, " ".join((s.doc or "").split()), s.revision in heads)  # type: ignore[arg-type]
        for s in script.walk_revisions()
    ]
    return revisions[::-1]


def current(connection: Connection) -> str | None:
    """The revision the database is at; None when it has no ``alembic_version`` (empty, or previous release)."""
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def differences(connection: Connection) -> list[Any]:
    """What differs between the database and :data:`alpr.metadata.schema.metadata_obj`, as Alembic's
    autogenerate sees it (tables, columns, types, nullability, indexes, unique and foreign keys; not CHECK
    constraints). Empty when the database is at head and ``schema.py`` agrees with the newest migration.

    Returns:
        Alembic's diff tuples, e.g. ``("add_index", Index(...))``.
    """
    return compare_metadata(MigrationContext.configure(connection, opts=_context_options(connection)), metadata_obj)


def upgrade(
    connection: Connection, revision: str = "head", *, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> MigrationResult:
    """Upgrade the database on ``connection`` to ``revision`` (default the newest), one migrator at a time.

    Args:
        connection: a connection of :class:`~alpr.metadata.store.MetadataStore` opened for writing (on SQLite its
            transactions begin with ``BEGIN IMMEDIATE``), not in a transaction.
        revision: ``"head"`` or a revision id (``"0001"``).
        lock_timeout_s: on MySQL/MariaDB, how long to wait for another process's migration.

    Raises:
        MigrationError: unknown revision, a revision older than the database's (use :func:`downgrade`), a
            database at a revision this code does not know, or the lock not obtained in time.
    """
    return _migrate(connection, revision, command.upgrade, lock_timeout_s)


def downgrade(connection: Connection, revision: str, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> MigrationResult:
    """Downgrade the database on ``connection`` to ``revision`` (``"base"`` drops every table and its rows).

    Raises:
        MigrationError: as :func:`upgrade`, or ``revision`` is newer than the database's.
    """
    return _migrate(connection, revision, command.downgrade, lock_timeout_s)


def _migrate(
    connection: Connection, revision: str, run: Callable[[Config, str], None], lock_timeout_s: float
) -> MigrationResult:
    if not revision or not revision.strip():
        raise MigrationError("no revision given: pass 'head' or a revision id (alpr db history lists them)")
    script = _script()
    _check_known(script, revision, what="revision")
    with migration_lock(connection, lock_timeout_s), _sqlite_lock_timeout(connection), connection.begin():
        before = current(connection)
        if before is not None:
            _check_known(script, before, what="the database's revision")
        tables = set(sa.inspect(connection).get_table_names())
        adopted = before is None and bool(tables & set(metadata_obj.tables))
        try:
            run(alembic_config(connection), revision)
        except (CommandError, RevisionError) as exc:
            shown = before or "an unversioned database"
            raise MigrationError(f"cannot migrate from {shown} to {revision}: {exc}") from exc
        return MigrationResult(before, current(connection), adopted)


def _check_known(script: ScriptDirectory, revision: str, *, what: str) -> None:
    if revision in ("head", "heads", "base"):
        return
    try:
        found = script.get_revision(revision)
    except (CommandError, RevisionError):
        found = None
    if found is None or found.revision != revision:  # Alembic also accepts a prefix: ask for the whole id
        known = ", ".join(r.id for r in history())
        hint = " (a newer release migrated it: run that release)" if what.startswith("the database") else ""
        raise MigrationError(f"{what} {revision!r} is unknown to this code{hint}; known: {known}, head, base")


@contextmanager
def migration_lock(connection: Connection, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the migration lock of the database on ``connection`` (MySQL/MariaDB: ``GET_LOCK`` of a name derived
    from the database's, a session lock) for the block; the connection must not be in a transaction, and the
    block should end its own transaction inside. On SQLite nothing is taken: the ``BEGIN IMMEDIATE`` of the store's
    write transaction is the lock.

    Raises:
        MigrationError: the lock was not obtained within ``timeout_s`` seconds.
    """
    if connection.dialect.name not in ("mysql", "mariadb"):
        yield  # SQLite: the BEGIN IMMEDIATE of the write transaction is the lock
        return
    got = connection.exec_driver_sql(f"SELECT GET_LOCK({_LOCK_NAME_SQL}, %s)", (float(timeout_s),)).scalar()
    connection.rollback()  # end the implicit transaction; the lock belongs to the session
    if got != 1:
        raise MigrationError(
            f"timed out after {timeout_s:g} s waiting for the migration lock: another process is migrating this "
            "database (alpr db upgrade, or a step's create_schema)"
        )
    try:
        yield
    finally:
        try:
            connection.exec_driver_sql(f"SELECT RELEASE_LOCK({_LOCK_NAME_SQL})")
            connection.rollback()
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and the server released the lock with its session


@contextmanager
def _sqlite_lock_timeout(connection: Connection) -> Iterator[None]:
    """Turn SQLite's "database is locked" (the write lock not obtained within the busy timeout) into
    :class:`MigrationError`."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        if connection.dialect.name != "sqlite" or "locked" not in str(exc.orig):
            raise
        raise MigrationError(
            "timed out waiting for the SQLite write lock: another process is writing to or migrating this database"
        ) from exc


def new_revision(message: str, *, autogenerate: bool = False, connection: Connection | None = None) -> Path:
    """Write the next revision file (``NNNN_<slug of message>.py``) into ``versions/``; return its path.

    Args:
        message: what the revision does (its docstring's first line and the file name's slug).
        autogenerate: fill ``upgrade()``/``downgrade()`` with what :func:`differences` finds between
            ``schema.py`` and the database on ``connection`` (which must be at head).
        connection: needed with ``autogenerate``.

    Raises:
        ValueError: empty ``message``, or ``autogenerate`` without a connection.
        MigrationError: with ``autogenerate``, the database is not at head.
    """
    if not message.strip():
        raise ValueError("revision message is empty: say what the migration changes")
    if autogenerate and connection is None:
        raise ValueError("autogenerate compares schema.py with a database: pass a connection (alpr db revision --url)")
    numbers = [int(r.id) for r in history() if _REVISION_ID.fullmatch(r.id)]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    try:
        script = command.revision(
            alembic_config(connection), message=message.strip(), autogenerate=autogenerate, rev_id=rev_id
        )
    except (CommandError, RevisionError) as exc:
        raise MigrationError(f"cannot write revision {rev_id}: {exc}") from exc
    if script is None or isinstance(script, list):  # only with branches or --sql, which are not used here
        raise MigrationError(f"Alembic wrote no single revision file for {rev_id}")
    return Path(script.path)
