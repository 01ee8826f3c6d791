"""Row helpers shared by the reads (:mod:`~alpr.metadata.queries`) and the writes (:mod:`~alpr.metadata.transaction`).

Argument checks (each raises ``ValueError`` naming the argument), id lookups by name (each raises
:class:`~alpr.metadata.errors.NotFound`), inserts that refuse a string longer than its column, and the translation
of a unique-key violation into :class:`~alpr.metadata.errors.AlreadyExists`. Internal to :mod:`alpr.metadata`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alpr.metadata.errors import AlreadyExists, NotFound
from alpr.metadata.schema import (
    SPLITS,
    annotation_versions,
    models,
    pipeline_runs,
    training_versions,
    tuning_studies,
)

# --------------------------------------------------------------------------------------------------- checks


def check_json(value: Any, what: str) -> Any:
    """Return ``value`` if it is storable as JSON (no NaN or infinities); else raise ``ValueError`` naming ``what``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not storable as JSON: {exc}") from exc
    return value


def check_name(value: Any, what: str) -> str:
    """Return ``value`` if it is a non-empty string without surrounding whitespace; else raise ``ValueError``."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{what} must be a non-empty string without surrounding whitespace, got {value!r}")
    return value


def check_sha256(value: Any, what: str) -> str:
    """Return ``value`` if it is a hex SHA-256 digest (64 lower-case hex digits, as ``hashlib``'s ``hexdigest``);
    else raise ``ValueError`` naming ``what``."""
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{what} must be 64 lower-case hex digits, got {value!r}")
    return value


def check_int(value: Any, what: str, *, minimum: int | None = 0, optional: bool = False) -> int | None:
    """Return ``value`` as an ``int`` (not a bool; ``>= minimum`` unless None; None allowed if ``optional``).

    Raises:
        ValueError: anything else, naming ``what``.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def check_split(value: Any, what: str = "split") -> str:
    """Return ``value`` if it is one of :data:`~alpr.spec.SPLITS`; else raise ``ValueError`` naming ``what``."""
    if value not in SPLITS:
        raise ValueError(f"{what} must be one of {', '.join(SPLITS)}; got {value!r}")
    return value


def check_lengths(table: sa.Table, row: Mapping[str, Any]) -> None:
    """Refuse a string longer than its column (MySQL would refuse it, SQLite would silently store it).

    Raises:
        ValueError: naming the table, the column and the length.
    """
    for col in table.c:
        length = getattr(col.type, "length", None)
        value = row.get(col.name)
        if length and isinstance(value, str) and len(value) > length:
            raise ValueError(
                f"{table.name}.{col.name} holds at most {length} characters, got {len(value)}: {value[:80]!r}..."
            )


def finite_or_none(value: Any, what: str) -> float | None:
    """Return ``value`` as a float, None for None, NaN and infinities.

    Raises:
        ValueError: ``value`` is a bool or not a number, naming ``what``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    return number if math.isfinite(number) else None


def finite_metrics(metrics: Mapping[str, Any], what: str) -> dict[str, float | None]:
    """Return ``{name: finite_or_none(value)}``; names checked with :func:`check_name` (``what`` names them)."""
    return {check_name(k, f"{what} name"): finite_or_none(v, f"{what} {k!r}") for k, v in metrics.items()}


# --------------------------------------------------------------------------------------------------- id lookups


def _id_by_name(conn: Connection, table: sa.Table, name: str, what: str) -> int:
    found = conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"{what} {name!r} does not exist")
    return int(found)


def annotation_version_id(conn: Connection, name: str) -> int:
    """The id of annotation version ``name``; raises NotFound if there is none."""
    return _id_by_name(conn, annotation_versions, name, "annotation version")


def training_version_id(conn: Connection, name: str) -> int:
    """The id of training version ``name``; raises NotFound if there is none."""
    return _id_by_name(conn, training_versions, name, "training version")


def run_id(conn: Connection, name: str | None) -> int | None:
    """The id of pipeline run ``name`` (None for None); raises NotFound if there is none."""
    if name is None:
        return None
    return _id_by_name(conn, pipeline_runs, name, "pipeline run")


def tuning_study_id(conn: Connection, name: str) -> int:
    """The id of tuning study ``name``; raises NotFound if there is none."""
    return _id_by_name(conn, tuning_studies, name, "tuning study")


def require_model(conn: Connection, model_id: int) -> int:
    """Return ``model_id`` as an int if the model exists.

    Raises:
        ValueError: ``model_id`` is not an integer.
        NotFound: no model ``model_id``.
    """
    model_id = check_int(model_id, "model_id", minimum=None)
    if conn.execute(sa.select(models.c.id).where(models.c.id == model_id)).scalar() is None:
        raise NotFound(f"model id {model_id} does not exist")
    return model_id


# --------------------------------------------------------------------------------------------------- rows


def as_dict(row: sa.Row | None) -> dict | None:
    """A result row as a plain ``{column: value}`` dict (None for None)."""
    return None if row is None else dict(row._mapping)


def fetch_one(conn: Connection, query: sa.Select) -> dict | None:
    """The first row of ``query`` as a dict, or None when it has none."""
    return as_dict(conn.execute(query).first())


def fetch_all(conn: Connection, query: sa.Select) -> list[dict]:
    """Every row of ``query`` as a dict, in the query's order."""
    return [dict(r._mapping) for r in conn.execute(query)]


def insert(conn: Connection, table: sa.Table, row: Mapping[str, Any]) -> int:
    """Insert ``row`` into ``table`` (lengths checked); return its primary key."""
    check_lengths(table, row)
    result = conn.execute(sa.insert(table), dict(row))
    return int(result.inserted_primary_key[0])


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` in one executemany (lengths checked); nothing for no rows."""
    for row in rows:
        check_lengths(table, row)
    if rows:  # executemany; an empty parameter list would insert one row of defaults
        conn.execute(sa.insert(table), [dict(r) for r in rows])


def _is_duplicate_key(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and args[0] == 1062:  # MySQL/MariaDB ER_DUP_ENTRY
        return True
    errname = getattr(orig, "sqlite_errorname", "")
    if errname in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return True
    return "UNIQUE constraint failed" in str(orig) or "Duplicate entry" in str(orig)


@contextmanager
def duplicates_as(message: str) -> Iterator[None]:
    """Translate a unique-key violation inside the block into :class:`AlreadyExists` with ``message``.

    Other integrity errors (a foreign key, a CHECK) propagate unchanged.
    """
    try:
        yield
    except sa.exc.IntegrityError as exc:
        if _is_duplicate_key(exc):
            raise AlreadyExists(message) from exc
        raise
