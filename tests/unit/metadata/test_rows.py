"""Tests of alpr.metadata.rows: the helpers shared by the reads and the writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from alpr.metadata import AlreadyExists, rows, schema


def test_unique_violation_from_the_database_is_translated(store, populate):
    """The pre-checks aside, a unique-key error raised by the database itself (a race) becomes AlreadyExists."""
    populate(store)
    row = {
        "name": "annotations-v1",
        "git_rev": "r",
        "image_count": 0,
        "class_counts": {},
        "description": "",
        "created_at": datetime.now(UTC),
    }
    with (
        pytest.raises(AlreadyExists, match="raced"),
        store.transaction() as tx,
        rows.duplicates_as("annotations-v1 raced"),
    ):
        tx.connection.execute(sa.insert(schema.annotation_versions), row)
    # other integrity errors stay as they are
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as tx, rows.duplicates_as("not this"):
        tx.connection.execute(
            sa.insert(schema.models),
            {
                "uri": "u",
                "training_version_id": 12345,
                "config_uri": "",
                "config_hash": "",
                "checkpoint": "",
                "hyperparameters": {},
                "selected": False,
                "created_at": datetime.now(UTC),
            },
        )
