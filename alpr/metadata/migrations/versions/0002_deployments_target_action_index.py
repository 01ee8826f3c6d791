"""deployments: one index on (target, action, created_at) in place of the one on target alone.

:func:`alpr.metadata.queries.current_deployment` -- asked by every Deploy step -- selects the rows of one
``target`` with ``action = 'deployed'`` and takes the newest by ``created_at``; with this index the database reads
that one row from the index instead of every decision ever recorded at the target. The index on ``target`` alone
becomes redundant (the new one starts with ``target``, so :func:`alpr.metadata.queries.deployments` filtered by
target uses it too) and is dropped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.sql.naming import conv

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``ix_deployments_target_action_created_at``; drop ``ix_deployments_target``."""
    op.create_index(
        conv("ix_deployments_target_action_created_at"), "deployments", ["target", "action", "created_at"], unique=False
    )
    op.drop_index(conv("ix_deployments_target"), table_name="deployments")


def downgrade() -> None:
    """Restore ``ix_deployments_target``; drop the three-column index."""
    op.create_index(conv("ix_deployments_target"), "deployments", ["target"], unique=False)
    op.drop_index(conv("ix_deployments_target_action_created_at"), table_name="deployments")
