"""The metadata store's engine: :class:`MetadataStore` (URL, password injection, schema migrations, transactions).

Two backends, chosen by the URL alone:

- ``sqlite:///path/to/metadata.db`` -- the embedded default (a laptop, CI); the parent folder is created,
  foreign keys are enforced (``PRAGMA foreign_keys=ON``) and SQLAlchemy, not the ``sqlite3`` driver, issues
  ``BEGIN`` so that a transaction really covers every statement in it.
- ``mysql+pymysql://user@host:3306/db`` -- production (MySQL or MariaDB, InnoDB, ``utf8mb4`` with a binary
  collation so that names compare exactly as on SQLite: case- and accent-sensitive).

The password never needs to be in the URL: when the ``ALPR_DB_PASSWORD`` environment variable is set (and not
empty) it is injected into a non-SQLite URL. The URL is only ever shown redacted
(:attr:`MetadataStore.url_for_display`, ``repr``, error messages, the CLI).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from alpr.metadata import migrate, queries
from alpr.metadata.errors import MetadataConnectionError
from alpr.metadata.transaction import MetadataTx

__all__ = ["PASSWORD_ENV", "MetadataStore"]

#: Environment variable holding the database password (injected into the URL, never logged).
PASSWORD_ENV = "ALPR_DB_PASSWORD"

_SQLITE_BUSY_TIMEOUT_S = 30.0

T = TypeVar("T")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _resolve_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError("malformed metadata store URL (expected sqlite:///... or mysql+pymysql://...)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "mysql", "mariadb"):
        raise ValueError(f"unsupported metadata store backend {backend!r}: use sqlite:/// or mysql+pymysql://")
    password = os.environ.get(PASSWORD_ENV)
    if password and backend != "sqlite":
        parsed = parsed.set(password=password)
    if backend != "sqlite" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    database = url.database or ""
    if database.startswith("file:"):  # a SQLite URI filename (uri=true)
        if url.query.get("mode") == "memory":
            return None
        database = database[len("file:") :]
    if not database or database == ":memory:":
        return None
    return Path(database)


class MetadataStore(queries.Reads):
    """The metadata store at ``url``; nothing is opened until the first call that needs the database.

    Args:
        url: ``sqlite:///path/to/metadata.db`` or ``mysql+pymysql://user@host:3306/db``. The password comes
            from ``$ALPR_DB_PASSWORD`` when set (it overrides one in the URL); ``charset=utf8mb4`` is added to a
            MySQL URL without a charset.
        echo: log every SQL statement (SQLAlchemy ``echo``; parameters are logged, the URL is not).

    Raises:
        ValueError: the URL is malformed, names another backend, or is an in-memory SQLite database (each pooled
            connection would see a different database; use a file, e.g. in ``tmp_path`` for tests).

    Every read of :mod:`~alpr.metadata.queries` is a method here (``store.get_run(name)``), each on its own short
    connection; the writes are methods of the :class:`~alpr.metadata.transaction.MetadataTx` that
    :meth:`transaction` yields.
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self._url = _resolve_url(url)
        self._display = self._url.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _dumps,
            "json_deserializer": json.loads,
        }
        self._sqlite = self._url.get_backend_name() == "sqlite"
        if self._sqlite:
            path = _sqlite_file(self._url)
            if path is None:
                raise ValueError(
                    "an in-memory SQLite metadata store is not supported (every connection of the pool would see "
                    "another database, or share one transaction): use sqlite:///path/to/metadata.db"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            if "timeout" not in self._url.query:
                kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs.update(pool_pre_ping=True, pool_recycle=3600)
        self._engine: Engine = sa.create_engine(self._url, **kwargs)
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_on_connect)
            event.listen(self._engine, "begin", _sqlite_on_begin)

    def __repr__(self) -> str:
        return f"MetadataStore({self._display!r})"

    @property
    def url_for_display(self) -> str:
        """The URL with its password replaced by ``***`` (safe to log)."""
        return self._display

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``"sqlite"``, ``"mysql"`` (also for MariaDB over mysql+pymysql) ..."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools; prefer the methods)."""
        return self._engine

    def _connect(self, *, write: bool = False) -> Connection:
        try:
            conn = self._engine.connect()
        except sa.exc.DBAPIError as exc:
            raise MetadataConnectionError(f"cannot connect to the metadata store {self._display}: {exc.orig}") from None
        if write:
            conn.execution_options(alpr_write=True)
        return conn

    def _read(self, query: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        with self._connect() as conn:
            return query(conn, *args, **kwargs)

    def create_schema(self) -> migrate.MigrationResult:
        """Bring the database to the newest schema: :meth:`upgrade_schema` to ``"head"``.

        Idempotent, and safe when several processes call it at once (they migrate one at a time). An empty
        database gets every table; one the previous release created (tables, no ``alembic_version``) keeps its
        rows and is upgraded.

        Raises:
            MetadataConnectionError: the database cannot be reached.
            MigrationError: the database was migrated by a newer release, or another migration held the lock
                for longer than :data:`alpr.metadata.migrate.LOCK_TIMEOUT_S`.
        """
        return self.upgrade_schema("head")

    def upgrade_schema(self, revision: str = "head") -> migrate.MigrationResult:
        """Upgrade the schema to ``revision`` (a revision id, or ``"head"``); see :func:`alpr.metadata.migrate.upgrade`.

        Raises:
            MetadataConnectionError: the database cannot be reached.
            MigrationError: as :func:`alpr.metadata.migrate.upgrade`.
        """
        with self._connect(write=True) as conn:
            return migrate.upgrade(conn, revision)

    def downgrade_schema(self, revision: str) -> migrate.MigrationResult:
        """Downgrade the schema to ``revision`` (``"base"``: drop every table); see
        :func:`alpr.metadata.migrate.downgrade`.

        Raises:
            MetadataConnectionError: the database cannot be reached.
            MigrationError: as :func:`alpr.metadata.migrate.downgrade`.
        """
        with self._connect(write=True) as conn:
            return migrate.downgrade(conn, revision)

    def schema_revision(self) -> str | None:
        """The revision the database is at (None: no ``alembic_version``, an empty or previous-release database).

        Raises:
            MetadataConnectionError: the database cannot be reached.
        """
        with self._connect() as conn:
            return migrate.current(conn)

    def schema_differences(self) -> list:
        """What differs between the database and :mod:`alpr.metadata.schema` (Alembic's diff tuples; empty when
        they agree); see :func:`alpr.metadata.migrate.differences`.

        Raises:
            MetadataConnectionError: the database cannot be reached.
        """
        with self._connect() as conn:
            return migrate.differences(conn)

    @contextmanager
    def transaction(self) -> Iterator[MetadataTx]:
        """Open a transaction; yield a :class:`MetadataTx` for its writes and reads.

        Commits when the block ends normally; on any exception rolls back every write of the block and re-raises.
        Use it to tie the rows of one step to external side effects (a DVC push, a git tag push): raise from the
        block and the rows vanish.

        Raises:
            MetadataConnectionError: the database cannot be reached.
        """
        with self._connect(write=True) as conn:
            tx = MetadataTx(conn)
            try:
                with conn.begin():
                    yield tx
            finally:
                tx._close()

    def dispose(self) -> None:
        """Close the pooled connections (the store can still be used; it reconnects when needed)."""
        self._engine.dispose()


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 driver, emit BEGIN (see _sqlite_on_begin), so that reads and DDL are
    # inside the transaction too; enforce foreign keys (a per-connection setting, off by default).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A writing transaction takes the write lock at once (waiting up to the busy timeout), so that its reads
    # and writes cannot be interleaved with another writer's; plain reads take no lock until they read.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("alpr_write") else "BEGIN")
