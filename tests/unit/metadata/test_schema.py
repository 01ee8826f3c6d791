"""Tests of alpr.metadata.schema: the tables, their CHECK constraints and the UTC timestamp type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from alpr import metadata, spec
from alpr.metadata import schema


def test_timestamps_are_utc_and_ordered(store):
    with store.transaction() as tx:
        for i in range(3):
            tx.start_run(f"r{i}", {}, "h")
    starts = [store.get_run(f"r{i}")["started_at"] for i in range(3)]
    assert starts == sorted(starts)
    assert all(s.tzinfo is UTC for s in starts)
    with pytest.raises(sa.exc.StatementError, match="naive"), store.transaction() as tx:
        tx.connection.execute(sa.update(schema.pipeline_runs).values(finished_at=datetime(2024, 1, 1)))


def test_check_constraints_are_built_from_the_vocabularies():
    checks = {
        (table.name, constraint.name): str(constraint.sqltext)
        for table in schema.metadata_obj.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint)
    }
    assert schema.SPLITS is spec.SPLITS and metadata.SPLITS is spec.SPLITS  # one source of truth
    assert checks == {
        ("splits", "ck_splits_split"): "split IN ('train', 'val', 'test')",
        ("evaluations", "ck_evaluations_split"): "split IN ('train', 'val', 'test')",
        ("model_baselines", "ck_model_baselines_split"): "split IN ('train', 'val', 'test')",
        ("deployments", "ck_deployments_action"): "action IN ('deployed', 'skipped', 'failed')",
        ("tuning_studies", "ck_tuning_studies_status"): "status IN ('running', 'succeeded', 'failed', 'timeout')",
        ("tuning_studies", "ck_tuning_studies_direction"): "direction IN ('maximize', 'minimize')",
        ("tuning_trials", "ck_tuning_trials_state"): "state IN ('running', 'succeeded', 'pruned', 'failed')",
    }
    assert checks["splits", "ck_splits_split"] == schema.in_check("split", spec.SPLITS)
    assert schema.in_check("c", ["it's", "b"]) == "c IN ('it''s', 'b')"


def test_database_refuses_a_value_outside_a_vocabulary(store, populate):
    model = populate(store)["model"]
    with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.evaluations),
            {"model_id": model, "split": "holdout", "metrics": {}, "created_at": datetime.now(UTC)},
        )
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.evaluations)).scalar() == 1
