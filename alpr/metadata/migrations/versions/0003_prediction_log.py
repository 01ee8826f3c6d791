"""prediction log: tables ``predictions``, ``corrections`` and ``model_baselines`` (alpr.monitoring).

- ``model_baselines``: the Test step's summary of how a model read the held-out split (plates, valid plates, the
  plate-score histogram), the reference the monitor's drift gauges compare live readings with.
- ``predictions``: one row per image the served model read (from KServe's payload-logger CloudEvents): when, which
  model, the image's SHA-256, size and dimensions, the reading (JSON, PLATE_SPEC), its plate counts and scores
  (for the filters and the trends), the latency, and the sampled image's URI (cleared by the retention purge).
- ``corrections``: a reviewer's account of one prediction's plates, with who and when.

Written out here, not taken from :mod:`alpr.metadata.schema`, so that later changes to ``schema.py`` cannot change
what this revision creates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.naming import conv

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# InnoDB, utf8mb4 with a binary collation on MySQL/MariaDB (mysql_* for mysql:// URLs, mariadb_* for mariadb://).
_MYSQL = {
    f"{dialect}_{option}": value
    for dialect in ("mysql", "mariadb")
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


def _utc() -> sa.types.TypeEngine:
    """The DDL of ``schema.UTCDateTime``: DATETIME, with microseconds on MySQL/MariaDB."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=conv(f"fk_{table}_{column}_{target}"))


def _index(table: str, column: str, *, unique: bool = False) -> None:
    op.create_index(conv(f"ix_{table}_{column}"), table, [column], unique=unique)


def upgrade() -> None:
    """Create ``model_baselines``, ``predictions`` and ``corrections`` with their indexes."""
    op.create_table(
        "model_baselines",
        _id(),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("plates", sa.Integer(), nullable=False),
        sa.Column("valid_plates", sa.Integer(), nullable=False),
        sa.Column("score_edges", sa.JSON(), nullable=False),
        sa.Column("score_counts", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=conv("pk_model_baselines")),
        _fk("model_baselines", "model_id", "models"),
        _fk("model_baselines", "run_id", "pipeline_runs"),
        sa.CheckConstraint("split IN ('train', 'val', 'test')", name=conv("ck_model_baselines_split")),
        **_MYSQL,
    )
    _index("model_baselines", "model_id")
    _index("model_baselines", "run_id")
    op.create_table(
        "predictions",
        _id(),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("plates", sa.JSON(), nullable=False),
        sa.Column("plate_count", sa.Integer(), nullable=False),
        sa.Column("valid_count", sa.Integer(), nullable=False),
        sa.Column("score_sum", sa.Double(), nullable=False),
        sa.Column("min_score", sa.Double(), nullable=True),
        sa.Column("image_uri", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name=conv("pk_predictions")),
        sa.UniqueConstraint("event_id", name=conv("uq_predictions_event_id")),
        **_MYSQL,
    )
    _index("predictions", "received_at")
    _index("predictions", "image_sha256")
    op.create_table(
        "corrections",
        _id(),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("plates", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=conv("pk_corrections")),
        _fk("corrections", "prediction_id", "predictions"),
        **_MYSQL,
    )
    _index("corrections", "prediction_id")
    _index("corrections", "created_at")


def downgrade() -> None:
    """Drop the three tables (and every logged prediction, correction and baseline), dependants first."""
    for table in ("corrections", "predictions", "model_baselines"):
        op.drop_table(table)
