"""models: ``onnx_sha256``, the SHA-256 of the selected model's ONNX export.

Evaluate exports the selected model for ONNX Runtime (``model.onnx``, :mod:`alpr.model.onnx_detector`); the model
server refuses a ``model.onnx`` whose digest differs from its ``model.json``, and this column lets whoever audits a
deployment compare the file in the bucket with what Evaluate wrote. For a two-stage model it is the reader's file;
the plate detector's digest is in ``model.json``. NULL for models without an export (every model before this
revision, and the candidates that were not selected).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable ``models.onnx_sha256`` (64 hex characters)."""
    op.add_column("models", sa.Column("onnx_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop ``models.onnx_sha256`` (``ALTER TABLE ... DROP COLUMN``: SQLite has it since 3.35, and a rebuild of
    ``models`` would break the foreign keys that point at it)."""
    op.drop_column("models", "onnx_sha256")
