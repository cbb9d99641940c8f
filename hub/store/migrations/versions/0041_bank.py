"""bank: entries of imported bank statements (camt.053 / camt.054)

Revision ID: 0041_bank
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041_bank"
down_revision = "0001_core"
branch_labels = ("bank",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_entry",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("org", sa.String(200), nullable=False),
        sa.Column("statement_id", sa.String(200), nullable=False),
        sa.Column("message_type", sa.String(10), nullable=False),
        sa.Column("credit", sa.Boolean(), nullable=False),
        sa.Column("reversal", sa.Boolean(), nullable=False),
        sa.Column("booked", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("booking_date", sa.String(40)),
        sa.Column("reference", sa.String(40)),
        sa.Column("quoted_reference", sa.String(200)),
        sa.Column("end_to_end_id", sa.String(200)),
        sa.Column("debtor_name", sa.String(300)),
        sa.Column("return_reason", sa.String(40)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("invoice_id", sa.String(250)),
        sa.Column("candidate_invoice_id", sa.String(250)),
        sa.Column("payment_id", sa.String(450)),
        sa.Column("reverses", sa.String(40)),
        sa.Column("note", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("key", name="uq_bank_entry_key"),
    )
    op.create_index("ix_bank_entry_org", "bank_entry", ["org"])
    op.create_index("ix_bank_entry_state", "bank_entry", ["state"])
    op.create_index("ix_bank_entry_invoice_id", "bank_entry", ["invoice_id"])


def downgrade() -> None:
    op.drop_table("bank_entry")
