"""portal: a usual level of use per metric on alert rules, and the metric an alert is about

Revision ID: 0007_portal_usual_usage
Revises: 0005_portal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_portal_usual_usage"
down_revision = "0005_portal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_rule") as batch:
        batch.add_column(sa.Column("usual_usage", sa.Text(), nullable=True))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("metric", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("metric")
    with op.batch_alter_table("alert_rule") as batch:
        batch.drop_column("usual_usage")
