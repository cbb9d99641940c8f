"""Alert rules and raised alerts (Alembic branch `portal`: 0005_portal, 0007_portal_usual_usage).

A rule belongs to one org on one contract: each party sets its own budget, its usual level of spending, its
usual level of use per metric and the webhooks to tell. An alert's id is derived from (contract, org,
period, kind, metric), so a threshold crossed again — by the next evaluation, another hub process, or a
restart — can never raise a second alert.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.base import Base


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AlertRule(Base):
    __tablename__ = "alert_rule"
    __table_args__ = (UniqueConstraint("contract_id", "org", name="uq_alert_rule_contract_org"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False)
    org: Mapped[str] = mapped_column(String(200), nullable=False)
    budget: Mapped[str | None] = mapped_column(String(40))  # decimal string, period total incl. tax
    usual_level: Mapped[str | None] = mapped_column(String(40))  # decimal string, a usual period's total
    usual_usage: Mapped[str | None] = mapped_column(Text)  # JSON {metric: decimal string}, usual use
    webhooks: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON [{"url", "secret"}]
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(400), primary_key=True)
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    org: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    metric: Mapped[str | None] = mapped_column(String(100))  # usage alerts: amounts are its quantities
    message: Mapped[str] = mapped_column(Text, nullable=False)
    forecast_total: Mapped[str] = mapped_column(String(40), nullable=False)
    threshold: Mapped[str] = mapped_column(String(40), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
