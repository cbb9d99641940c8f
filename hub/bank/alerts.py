"""`payment_returned`: a payment the bank had credited came back (a returned direct debit, a recalled
transfer), so the invoice is open again. One alert per party and reversal, raised in the same database
transaction that marks the reversal recorded, webhooks included (the portal's alert table and the
delivery outbox, as the budget alerts in hub/portal/alerts.py). Its id is derived from the bank entry, so a
re-import or a second hub process cannot raise it twice."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.portal.alerts import alert_payload
from hub.portal.models import Alert, AlertRule

KIND = "payment_returned"


def raise_payment_returned(session: Session, invoice: Mapping[str, Any], *, reversal_key: str, reason: str,
                           amount: str, enqueue: Callable[..., None] | None) -> list[str]:
    parties = {"id": invoice["contract_id"], "provider": invoice["provider"], "customer": invoice["customer"],
               "currency": invoice["currency"]}
    message = (f"Payment of {amount} {invoice['currency']} for invoice {invoice['id']} was returned by the "
               f"bank (reason {reason}); the invoice is {invoice['status']} again")
    return raise_contract_alert(session, parties, kind=KIND, key=reversal_key, period=invoice["period"],
                                message=message, amount=amount, threshold="0", enqueue=enqueue)


def raise_contract_alert(session: Session, contract: Mapping[str, Any], *, kind: str, key: str, period: str,
                         message: str, amount: str, threshold: str,
                         enqueue: Callable[..., None] | None) -> list[str]:
    """An alert about a contract's money (a low prepaid balance, a returned top-up) for both parties, once
    per `key` (derived from what the ledger records, so a second run or hub process raises nothing)."""
    raised = []
    for org in (contract["provider"], contract["customer"]):
        ident = f"alert-{contract['id']}-{org}-{period}-{kind}-{key}"
        if session.get(Alert, ident) is not None:
            continue
        alert = Alert(id=ident, contract_id=contract["id"], org=org, period=period, kind=kind, metric=None,
                      message=message, forecast_total=amount, threshold=threshold,
                      currency=str(contract["currency"])[:3], created_at=dt.datetime.now(dt.UTC))
        session.add(alert)
        session.flush()
        raised.append(ident)
        if enqueue is None:
            continue
        rule = session.scalar(select(AlertRule).where(AlertRule.contract_id == contract["id"],
                                                      AlertRule.org == org))
        body = alert_payload(alert)
        for hook in json.loads(rule.webhooks or "[]") if rule is not None else []:
            enqueue(session, alert, hook, body)
    return raised
