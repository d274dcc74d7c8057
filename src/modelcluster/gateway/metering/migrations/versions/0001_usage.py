"""The usage table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(320), nullable=False),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("meter_price", sa.Float, nullable=False),
        sa.Column("inference_seconds", sa.Float, nullable=False),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_usage_tenant_started", "usage", ["tenant", "started"])


def downgrade() -> None:
    op.drop_index("ix_usage_tenant_started", table_name="usage")
    op.drop_table("usage")
