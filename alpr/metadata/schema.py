"""The schema of the metadata store: SQLAlchemy Core tables, their column types and the value vocabularies.

One :data:`metadata_obj` (``MetaData`` with a naming convention) holds every table; both backends get the same
DDL (MySQL/MariaDB tables are InnoDB, ``utf8mb4`` with a binary collation so that names compare exactly as on
SQLite). The CHECK constraints are built from the vocabularies below (:data:`SPLITS` comes from
:mod:`alpr.spec`), so that a value the code accepts is a value the database accepts.

Timestamps are :class:`UTCDateTime` (naive UTC in the database, timezone-aware UTC in Python). JSON columns hold
plain JSON values (dicts, lists, str, int, float, bool, None).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alpr.spec import SPLITS

__all__ = [
    "CORRECTION_STATUSES",
    "DEPLOY_ACTIONS",
    "RUN_RUNNING",
    "SPLITS",
    "TUNING_BACKENDS",
    "TUNING_DIRECTIONS",
    "TUNING_STUDY_STATES",
    "TUNING_TRIAL_STATES",
    "UTCDateTime",
    "annotation_versions",
    "corrections",
    "deployments",
    "evaluation_metrics",
    "evaluations",
    "images",
    "in_check",
    "metadata_obj",
    "model_baselines",
    "models",
    "pipeline_runs",
    "predictions",
    "splits",
    "test_results",
    "training_versions",
    "tuning_studies",
    "tuning_trials",
]

#: Status a run has between :meth:`MetadataTx.start_run` and :meth:`MetadataTx.finish_run`.
RUN_RUNNING = "running"
#: What the Deploy step did: served the model, left the served one in place, or tried and failed.
DEPLOY_ACTIONS: tuple[str, ...] = ("deployed", "skipped", "failed")
#: States of a tuning study: running, finished (succeeded), failed (too many failed trials, or Katib's Failed),
#: timed out (gave up waiting; the best so far is kept).
TUNING_STUDY_STATES: tuple[str, ...] = ("running", "succeeded", "failed", "timeout")
#: States of a tuning trial (Katib's and Optuna's in one vocabulary: EarlyStopped / PRUNED are "pruned").
TUNING_TRIAL_STATES: tuple[str, ...] = ("running", "succeeded", "pruned", "failed")
#: What a reviewer says of one plate of a reading (alpr.monitoring): it is right, its text was wrong, the model
#: missed it, or there is no plate there.
CORRECTION_STATUSES: tuple[str, ...] = ("confirmed", "corrected", "missed", "false")
#: The engines a tuning study can run on.
TUNING_BACKENDS: tuple[str, ...] = ("katib", "optuna")
#: The directions of a tuning study's objective.
TUNING_DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored as naive UTC (microsecond precision on MySQL too) and read back as aware UTC.

    Raises:
        ValueError: (wrapped by SQLAlchemy in ``StatementError``) a naive datetime is written.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.engine.Dialect) -> sa.types.TypeEngine:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.engine.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.engine.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def in_check(column: str, values: Sequence[str]) -> str:
    """The SQL condition ``column IN ('a', 'b', ...)`` of a CHECK constraint (values quoted as SQL literals)."""
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"{column} IN ({quoted})"


_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
#: The schema (SQLAlchemy Core ``MetaData``) as the newest migration leaves it (``alpr/metadata/migrations/``;
#: :meth:`MetadataStore.create_schema` upgrades a database to it). Change a table here and in a new migration.
metadata_obj = sa.MetaData(naming_convention=_NAMING)
# InnoDB for foreign keys and transactions; utf8mb4 for any unicode; a binary collation so that unique names and
# lookups are exact (case- and accent-sensitive), as on SQLite.
# (mysql_* options apply to mysql:// URLs, mariadb_* ones to mariadb:// URLs.)
_MYSQL = {
    f"{dialect}_{option}": value
    for dialect in ("mysql", "mariadb")
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _created() -> sa.Column:
    return sa.Column("created_at", UTCDateTime, nullable=False)


def _fk(name: str, target: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer, sa.ForeignKey(target), nullable=nullable, index=True)


def _split_check() -> sa.CheckConstraint:
    return sa.CheckConstraint(in_check("split", SPLITS), name="split")


annotation_versions = sa.Table(
    "annotation_versions",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("git_rev", sa.String(64), nullable=False),
    sa.Column("image_count", sa.Integer, nullable=False),
    sa.Column("class_counts", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    _created(),
    **_MYSQL,
)

images = sa.Table(
    "images",
    metadata_obj,
    _id(),
    _fk("annotation_version_id", "annotation_versions.id"),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("plate_count", sa.Integer, nullable=False),
    sa.UniqueConstraint("annotation_version_id", "file_name"),
    **_MYSQL,
)

training_versions = sa.Table(
    "training_versions",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    _fk("annotation_version_id", "annotation_versions.id"),
    sa.Column("params_hash", sa.String(64), nullable=False),
    sa.Column("git_rev", sa.String(64), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("train_fraction", sa.Double, nullable=False),
    sa.Column("val_fraction", sa.Double, nullable=False),
    sa.Column("test_fraction", sa.Double, nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    _created(),
    sa.UniqueConstraint("annotation_version_id", "params_hash"),
    **_MYSQL,
)

splits = sa.Table(
    "splits",
    metadata_obj,
    sa.Column("training_version_id", sa.Integer, sa.ForeignKey("training_versions.id"), primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True, index=True),
    sa.Column("split", sa.String(8), nullable=False),
    _split_check(),
    **_MYSQL,
)

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    **_MYSQL,
)

models = sa.Table(
    "models",
    metadata_obj,
    _id(),
    sa.Column("uri", sa.String(1024), nullable=False),
    _fk("training_version_id", "training_versions.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("config_uri", sa.String(1024), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("checkpoint", sa.String(256), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("selected", sa.Boolean, nullable=False, index=True),
    sa.Column("selection_metric", sa.String(64), nullable=True),
    sa.Column("selection_value", sa.Double, nullable=True),
    sa.Column("selected_at", UTCDateTime, nullable=True),
    _created(),
    sa.Column("onnx_sha256", sa.String(64), nullable=True),  # revision 0004: the selected model's ONNX export
    **_MYSQL,
)

evaluations = sa.Table(
    "evaluations",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("split", sa.String(8), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    _created(),
    _split_check(),
    **_MYSQL,
)

evaluation_metrics = sa.Table(
    "evaluation_metrics",
    metadata_obj,
    sa.Column("evaluation_id", sa.Integer, sa.ForeignKey("evaluations.id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True, index=True),
    sa.Column("value", sa.Double, nullable=True),
    **_MYSQL,
)

test_results = sa.Table(
    "test_results",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("truth", sa.JSON, nullable=False),
    sa.Column("reading", sa.JSON, nullable=False),
    sa.Column("exact", sa.Boolean, nullable=False),
    _created(),
    **_MYSQL,
)

# -- deployments (the Deploy step): one row per decision to serve a model, or not, at a serving target ----------

deployments = sa.Table(
    "deployments",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    # "local", or "<namespace>/<InferenceService name>" on a cluster
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("new_eir", sa.Double, nullable=True),
    sa.Column("served_eir", sa.Double, nullable=True),
    _fk("served_model_id", "models.id", nullable=True),
    sa.Column("storage_uri", sa.String(1024), nullable=False),
    _created(),
    sa.CheckConstraint(in_check("action", DEPLOY_ACTIONS), name="action"),
    # queries.current_deployment: the newest "deployed" row of a target (migration 0002)
    sa.Index(None, "target", "action", "created_at"),
    **_MYSQL,
)


# -- hyperparameter tuning (alpr.tuning): Katib Experiments and their local Optuna twin, with their trials -------

tuning_studies = sa.Table(
    "tuning_studies",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("backend", sa.String(16), nullable=False),  # one of TUNING_BACKENDS
    sa.Column("algorithm", sa.String(64), nullable=False),
    sa.Column("objective", sa.String(64), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("search_space", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("best_trial", sa.String(128), nullable=True),
    sa.Column("best_value", sa.Double, nullable=True),
    sa.Column("best_params", sa.JSON, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(in_check("status", TUNING_STUDY_STATES), name="status"),
    sa.CheckConstraint(in_check("direction", TUNING_DIRECTIONS), name="direction"),
    **_MYSQL,
)

tuning_trials = sa.Table(
    "tuning_trials",
    metadata_obj,
    _id(),
    _fk("study_id", "tuning_studies.id"),
    sa.Column("name", sa.String(128), nullable=False),  # Katib's trial name, or "trial-<number>"
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("value", sa.Double, nullable=True),  # the objective (best observation), None if never reported
    sa.Column("metrics", sa.JSON, nullable=False),  # {name: value}: the objective's best, the others' latest
    sa.Column("intermediate", sa.JSON, nullable=False),  # [{"step": n, name: value, ...}] per validation
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("study_id", "name"),
    sa.CheckConstraint(in_check("state", TUNING_TRIAL_STATES), name="state"),
    **_MYSQL,
)


# -- the served model's baseline (the Test step) and the prediction log (alpr.monitoring; migration 0003) ---------

model_baselines = sa.Table(
    "model_baselines",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("split", sa.String(8), nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("plates", sa.Integer, nullable=False),
    sa.Column("valid_plates", sa.Integer, nullable=False),
    sa.Column("score_edges", sa.JSON, nullable=False),  # [e0, ..., eK]: K bins [e_i, e_i+1)
    sa.Column("score_counts", sa.JSON, nullable=False),  # [c0, ..., cK-1]: plates per bin
    _created(),
    _split_check(),
    **_MYSQL,
)

predictions = sa.Table(
    "predictions",
    metadata_obj,
    _id(),
    # "<ce-id>/<index of the image in the request>"
    sa.Column("event_id", sa.String(200), nullable=False, unique=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("image_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("image_bytes", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=True),
    sa.Column("plates", sa.JSON, nullable=False),  # the reading's plates, PLATE_SPEC "A reading"
    sa.Column("plate_count", sa.Integer, nullable=False),
    sa.Column("valid_count", sa.Integer, nullable=False),
    sa.Column("score_sum", sa.Double, nullable=False),
    sa.Column("min_score", sa.Double, nullable=True),  # None: no plate
    sa.Column("image_uri", sa.String(1024), nullable=True),  # None: not sampled, or purged
    **_MYSQL,
)

corrections = sa.Table(
    "corrections",
    metadata_obj,
    _id(),
    _fk("prediction_id", "predictions.id"),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("plates", sa.JSON, nullable=False),  # [{"box", "text", "status"}]
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    **_MYSQL,
)
