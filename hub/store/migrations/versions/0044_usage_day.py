"""usage days: daily usage aggregates for the portal's charts (ADR 0044)

Revision ID: 0044_usage_day
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044_usage_day"
down_revision = "0001_core"
branch_labels = ("usage_days",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_day",
        sa.Column("contract_id", sa.String(200), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("device_id", sa.String(200), primary_key=True),
        sa.Column("aggregate", sa.Text(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
    )
    op.create_index("ix_usage_day_block", "usage_day", ["block"])
    op.create_table(
        "usage_day_tx",
        sa.Column("tx_id", sa.String(128), primary_key=True),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_day_tx")
    op.drop_index("ix_usage_day_block", "usage_day")
    op.drop_table("usage_day")
