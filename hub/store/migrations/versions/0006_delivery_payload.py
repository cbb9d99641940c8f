"""delivery: a payload column, so webhooks (alerts) ride the same outbox as ERP postings

Revision ID: 0006_delivery_payload
Revises: 0002_delivery
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_delivery_payload"
down_revision = "0002_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("payload", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("payload")
