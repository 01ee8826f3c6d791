"""baseline: the schema that ``MetadataStore.create_schema()`` made before migrations (commit d4a9872).

Frozen history: every table, column, type, constraint and index is written out here, with its final name
(``conv``), instead of being taken from :mod:`alpr.metadata.schema`, so that later changes to ``schema.py`` cannot
change what this revision creates. ``tests/unit/metadata/test_migrate.py`` checks that it creates exactly the
previous release's DDL (``tests/unit/metadata/previous_release/``) on SQLite and MariaDB.

A database that the previous release created has these tables but no ``alembic_version``;
:func:`alpr.metadata.migrate.upgrade` runs this revision on it too, and each table that already exists is kept as
it is (the previous ``create_all(checkfirst=True)`` behaviour), so that such a database is adopted at this revision
with its rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.naming import conv

revision: str = "0001"
down_revision: str | None = None
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


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*(columns or ("id",)), name=conv(f"pk_{table}"))


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=conv(f"fk_{table}_{column}_{target}"))


def _uq(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=conv(f"uq_{table}_{'_'.join(columns)}"))


def _ck(table: str, name: str, sql: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sql, name=conv(f"ck_{table}_{name}"))


_SPLIT_CHECK = "split IN ('train', 'val', 'test')"


def _tables() -> tuple[tuple[str, tuple, tuple[str, ...]], ...]:
    """(table, its columns and constraints, its indexed columns), in the order create_all created them (new
    objects on each call: a column belongs to one table)."""
    return (
        (
            "annotation_versions",
            (
                _id(),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("git_rev", sa.String(64), nullable=False),
                sa.Column("image_count", sa.Integer(), nullable=False),
                sa.Column("class_counts", sa.JSON(), nullable=False),
                sa.Column("description", sa.Text(), nullable=False),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("annotation_versions"),
                _uq("annotation_versions", "name"),
            ),
            (),
        ),
        (
            "pipeline_runs",
            (
                _id(),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("parameters", sa.JSON(), nullable=False),
                sa.Column("host", sa.String(256), nullable=False),
                sa.Column("started_at", _utc(), nullable=False),
                sa.Column("finished_at", _utc(), nullable=True),
                _pk("pipeline_runs"),
                _uq("pipeline_runs", "name"),
            ),
            (),
        ),
        (
            "tuning_studies",
            (
                _id(),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("backend", sa.String(16), nullable=False),
                sa.Column("algorithm", sa.String(64), nullable=False),
                sa.Column("objective", sa.String(64), nullable=False),
                sa.Column("direction", sa.String(8), nullable=False),
                sa.Column("search_space", sa.JSON(), nullable=False),
                sa.Column("settings", sa.JSON(), nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("message", sa.Text(), nullable=False),
                sa.Column("best_trial", sa.String(128), nullable=True),
                sa.Column("best_value", sa.Double(), nullable=True),
                sa.Column("best_params", sa.JSON(), nullable=True),
                sa.Column("started_at", _utc(), nullable=False),
                sa.Column("finished_at", _utc(), nullable=True),
                _pk("tuning_studies"),
                _ck("tuning_studies", "status", "status IN ('running', 'succeeded', 'failed', 'timeout')"),
                _ck("tuning_studies", "direction", "direction IN ('maximize', 'minimize')"),
                _uq("tuning_studies", "name"),
            ),
            (),
        ),
        (
            "images",
            (
                _id(),
                sa.Column("annotation_version_id", sa.Integer(), nullable=False),
                sa.Column("file_name", sa.String(512), nullable=False),
                sa.Column("width", sa.Integer(), nullable=False),
                sa.Column("height", sa.Integer(), nullable=False),
                sa.Column("md5", sa.String(32), nullable=False),
                sa.Column("plate_count", sa.Integer(), nullable=False),
                _pk("images"),
                _uq("images", "annotation_version_id", "file_name"),
                _fk("images", "annotation_version_id", "annotation_versions"),
            ),
            ("annotation_version_id",),
        ),
        (
            "training_versions",
            (
                _id(),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("annotation_version_id", sa.Integer(), nullable=False),
                sa.Column("params_hash", sa.String(64), nullable=False),
                sa.Column("git_rev", sa.String(64), nullable=False),
                sa.Column("seed", sa.BigInteger(), nullable=False),
                sa.Column("train_fraction", sa.Double(), nullable=False),
                sa.Column("val_fraction", sa.Double(), nullable=False),
                sa.Column("test_fraction", sa.Double(), nullable=False),
                sa.Column("counts", sa.JSON(), nullable=False),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("training_versions"),
                _uq("training_versions", "annotation_version_id", "params_hash"),
                _uq("training_versions", "name"),
                _fk("training_versions", "annotation_version_id", "annotation_versions"),
            ),
            ("annotation_version_id",),
        ),
        (
            "tuning_trials",
            (
                _id(),
                sa.Column("study_id", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("number", sa.Integer(), nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("params", sa.JSON(), nullable=False),
                sa.Column("value", sa.Double(), nullable=True),
                sa.Column("metrics", sa.JSON(), nullable=False),
                sa.Column("intermediate", sa.JSON(), nullable=False),
                sa.Column("message", sa.Text(), nullable=False),
                sa.Column("started_at", _utc(), nullable=True),
                sa.Column("finished_at", _utc(), nullable=True),
                _pk("tuning_trials"),
                _uq("tuning_trials", "study_id", "name"),
                _ck("tuning_trials", "state", "state IN ('running', 'succeeded', 'pruned', 'failed')"),
                _fk("tuning_trials", "study_id", "tuning_studies"),
            ),
            ("study_id",),
        ),
        (
            "splits",
            (
                sa.Column("training_version_id", sa.Integer(), nullable=False),
                sa.Column("image_id", sa.Integer(), nullable=False),
                sa.Column("split", sa.String(8), nullable=False),
                _pk("splits", "training_version_id", "image_id"),
                _ck("splits", "split", _SPLIT_CHECK),
                _fk("splits", "training_version_id", "training_versions"),
                _fk("splits", "image_id", "images"),
            ),
            ("image_id",),
        ),
        (
            "models",
            (
                _id(),
                sa.Column("uri", sa.String(1024), nullable=False),
                sa.Column("training_version_id", sa.Integer(), nullable=False),
                sa.Column("run_id", sa.Integer(), nullable=True),
                sa.Column("config_uri", sa.String(1024), nullable=False),
                sa.Column("config_hash", sa.String(64), nullable=False),
                sa.Column("checkpoint", sa.String(256), nullable=False),
                sa.Column("epoch", sa.Integer(), nullable=True),
                sa.Column("hyperparameters", sa.JSON(), nullable=False),
                sa.Column("selected", sa.Boolean(), nullable=False),
                sa.Column("selection_metric", sa.String(64), nullable=True),
                sa.Column("selection_value", sa.Double(), nullable=True),
                sa.Column("selected_at", _utc(), nullable=True),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("models"),
                _fk("models", "training_version_id", "training_versions"),
                _fk("models", "run_id", "pipeline_runs"),
            ),
            ("run_id", "selected", "training_version_id"),
        ),
        (
            "evaluations",
            (
                _id(),
                sa.Column("model_id", sa.Integer(), nullable=False),
                sa.Column("run_id", sa.Integer(), nullable=True),
                sa.Column("split", sa.String(8), nullable=False),
                sa.Column("metrics", sa.JSON(), nullable=False),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("evaluations"),
                _ck("evaluations", "split", _SPLIT_CHECK),
                _fk("evaluations", "model_id", "models"),
                _fk("evaluations", "run_id", "pipeline_runs"),
            ),
            ("run_id", "model_id"),
        ),
        (
            "test_results",
            (
                _id(),
                sa.Column("model_id", sa.Integer(), nullable=False),
                sa.Column("run_id", sa.Integer(), nullable=True),
                sa.Column("file_name", sa.String(512), nullable=False),
                sa.Column("truth", sa.JSON(), nullable=False),
                sa.Column("reading", sa.JSON(), nullable=False),
                sa.Column("exact", sa.Boolean(), nullable=False),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("test_results"),
                _fk("test_results", "model_id", "models"),
                _fk("test_results", "run_id", "pipeline_runs"),
            ),
            ("run_id", "model_id"),
        ),
        (
            "deployments",
            (
                _id(),
                sa.Column("model_id", sa.Integer(), nullable=False),
                sa.Column("run_id", sa.Integer(), nullable=True),
                sa.Column("target", sa.String(256), nullable=False),
                sa.Column("action", sa.String(16), nullable=False),
                sa.Column("reason", sa.Text(), nullable=False),
                sa.Column("new_eir", sa.Double(), nullable=True),
                sa.Column("served_eir", sa.Double(), nullable=True),
                sa.Column("served_model_id", sa.Integer(), nullable=True),
                sa.Column("storage_uri", sa.String(1024), nullable=False),
                sa.Column("created_at", _utc(), nullable=False),
                _pk("deployments"),
                _ck("deployments", "action", "action IN ('deployed', 'skipped', 'failed')"),
                _fk("deployments", "model_id", "models"),
                _fk("deployments", "run_id", "pipeline_runs"),
                _fk("deployments", "served_model_id", "models"),
            ),
            ("run_id", "target", "model_id", "served_model_id"),
        ),
        (
            "evaluation_metrics",
            (
                sa.Column("evaluation_id", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(64), nullable=False),
                sa.Column("value", sa.Double(), nullable=True),
                _pk("evaluation_metrics", "evaluation_id", "name"),
                _fk("evaluation_metrics", "evaluation_id", "evaluations"),
            ),
            ("name",),
        ),
    )


def upgrade() -> None:
    """Create the baseline tables and their indexes; a table that already exists is left as it is."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table, items, indexed in _tables():
        if table in existing:
            continue
        op.create_table(table, *items, **_MYSQL)
        for column in indexed:
            op.create_index(conv(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    """Drop every table of the baseline (and so every row), dependants first."""
    for table, _items, _indexed in reversed(_tables()):
        op.drop_table(table)
