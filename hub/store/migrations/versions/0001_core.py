"""core: idempotency records, read models, event checkpoints, scheduler lease

Revision ID: 0001_core
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tx_id", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_record"),
        sa.UniqueConstraint("device_id", "message_id", name="uq_idempotency_record_message"),
    )
    op.create_table(
        "contract_view",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start", sa.String(10), nullable=False),
        sa.Column("end", sa.String(10)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contract_view"),
    )
    for column in ("provider", "customer", "status"):
        op.create_index(f"ix_contract_view_{column}", "contract_view", [column])
    op.create_table(
        "invoice_view",
        sa.Column("id", sa.String(250), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(7)),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.String(40), nullable=False),
        sa.Column("tx_id", sa.String(128)),
        sa.Column("block", sa.Integer()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_view"),
    )
    for column in ("contract_id", "provider", "customer", "status"):
        op.create_index(f"ix_invoice_view_{column}", "invoice_view", [column])
    op.create_table(
        "event_checkpoint",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("tx_ids", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name="pk_event_checkpoint"),
    )
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scheduler_lease"),
    )


def downgrade() -> None:
    for table in ("scheduler_lease", "event_checkpoint", "invoice_view", "contract_view", "idempotency_record"):
        op.drop_table(table)
