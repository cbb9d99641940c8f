"""bank: SEPA direct debit mandates per contract and the pain.008 collection made per invoice

Revision ID: 0042_bank_sepa
Revises: 0041_bank
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0042_bank_sepa"
down_revision = "0041_bank"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sepa_mandate",
        sa.Column("contract_id", sa.String(200), primary_key=True),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("debtor_org", sa.String(200), nullable=False),
        sa.Column("debtor_name", sa.String(140), nullable=False),
        sa.Column("iban", sa.String(34), nullable=False),
        sa.Column("bic", sa.String(11)),
        sa.Column("mandate_id", sa.String(35), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("scheme", sa.String(4), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sepa_collection",
        sa.Column("invoice_id", sa.String(250), primary_key=True),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("mandate_id", sa.String(35), nullable=False),
        sa.Column("file", sa.String(1000), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sepa_collection_contract_id", "sepa_collection", ["contract_id"])


def downgrade() -> None:
    op.drop_table("sepa_collection")
    op.drop_table("sepa_mandate")
