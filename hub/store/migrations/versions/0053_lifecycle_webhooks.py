"""lifecycle webhooks: per-org subscriptions and the lifecycle events seen (ADR 0053)

Revision ID: 0053_lifecycle_webhooks
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0053_lifecycle_webhooks"
down_revision = "0001_core"
branch_labels = ("lifecycle_webhooks",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("since_block", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_subscription_org", "webhook_subscription", ["org"])
    op.create_table(
        "lifecycle_event",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("tx_id", sa.String(128), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lifecycle_event_subject", "lifecycle_event", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_lifecycle_event_subject", "lifecycle_event")
    op.drop_table("lifecycle_event")
    op.drop_index("ix_webhook_subscription_org", "webhook_subscription")
    op.drop_table("webhook_subscription")
