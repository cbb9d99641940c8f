"""portal: alert rules and alerts

Revision ID: 0005_portal
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_portal"
down_revision = "0001_core"
branch_labels = ("portal",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("budget", sa.String(40)),
        sa.Column("usual_level", sa.String(40)),
        sa.Column("webhooks", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("contract_id", "org", name="uq_alert_rule_contract_org"),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.String(400), primary_key=True),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("forecast_total", sa.String(40), nullable=False),
        sa.Column("threshold", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alert_contract_id", "alert", ["contract_id"])
    op.create_index("ix_alert_org", "alert", ["org"])


def downgrade() -> None:
    op.drop_table("alert")
    op.drop_table("alert_rule")
