"""The metadata store: dataset versions, pipeline runs, models, evaluations, test results and baselines,
deployments, tuning studies, and the prediction log of the served model (its rows written and read by
:mod:`alpr.monitoring`), with their lineage, in one SQLAlchemy Core schema over SQLite (the default) or
MySQL/MariaDB (pymysql).

- :mod:`alpr.metadata.errors`: the error types (:class:`MetadataError` and its subclasses).
- :mod:`alpr.metadata.schema`: the tables, the UTC timestamp type and the value vocabularies (splits, run,
  deployment and tuning states) that the CHECK constraints are built from.
- :mod:`alpr.metadata.rows`: argument checks, id lookups by name and insert helpers shared by reads and writes.
- :mod:`alpr.metadata.queries`: every read, once, as a function of a connection; the registry that makes each one
  a method of the store and of a transaction.
- :mod:`alpr.metadata.transaction`: :class:`MetadataTx`, the writes, all-or-nothing inside one transaction.
- :mod:`alpr.metadata.migrate`: the schema migrations (Alembic; the revisions in ``migrations/versions/``):
  upgrade one migrator at a time, adopt a database of the previous release, compare a database with the schema.
- :mod:`alpr.metadata.store`: :class:`MetadataStore`, the engine (URL, password injection, SQLite settings),
  schema migrations (``create_schema`` upgrades to the newest) and transactions.
- :mod:`alpr.metadata.cli`: the command line, ``alpr db upgrade|init|current|check|downgrade|history|revision|show-url``
  (also ``python -m alpr.metadata``).

Usage::

    store = MetadataStore("sqlite:///.alpr/metadata.db")
    store.create_schema()                     # migrate to the newest schema (idempotent)
    with store.transaction() as tx:           # one transaction: commit on exit, ROLLBACK on any exception
        tx.add_annotation_version("annotations-v1", git_rev, class_counts, images)
        push_to_dvc()                         # if this raises, the rows above vanish
    store.get_annotation_version("annotations-v1")

Errors: :class:`MigrationError` when the schema cannot be migrated (a database newer than the code, the migration
lock not obtained), :class:`NotFound` (a :class:`LookupError`) when a named version/run or a model id does not exist,
:class:`AlreadyExists` for a duplicate name, ``ValueError`` for malformed arguments (a string longer than its
column, an unknown split, a file name that is not part of the annotation version, ...),
:class:`MetadataConnectionError` when the database cannot be reached. All but ``ValueError`` derive from
:class:`MetadataError`.
"""

from alpr.metadata.errors import AlreadyExists, MetadataConnectionError, MetadataError, MigrationError, NotFound
from alpr.metadata.schema import (
    DEPLOY_ACTIONS,
    RUN_RUNNING,
    SPLITS,
    TUNING_STUDY_STATES,
    TUNING_TRIAL_STATES,
    metadata_obj,
)
from alpr.metadata.store import MetadataStore
from alpr.metadata.transaction import MetadataTx

__all__ = [
    "DEPLOY_ACTIONS",
    "RUN_RUNNING",
    "SPLITS",
    "TUNING_STUDY_STATES",
    "TUNING_TRIAL_STATES",
    "AlreadyExists",
    "MetadataConnectionError",
    "MetadataError",
    "MetadataStore",
    "MetadataTx",
    "MigrationError",
    "NotFound",
    "metadata_obj",
]
