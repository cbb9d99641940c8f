"""Early warnings: each party sets a budget and a usual level of spending per contract; when the forecast for
the period crosses a threshold, one alert is raised — shown in the portal and sent to the party's webhooks.

Thresholds (forecast of the period's invoice total, tax included):

| kind | raised when |
|---|---|
| `budget_80` | forecast ≥ 80 % of the budget |
| `budget_100` | forecast ≥ the budget |
| `overrun_150` | forecast ≥ 150 % of the usual level |
| `underrun_50` | forecast ≤ 50 % of the usual level, once a quarter of the period has passed |
| `usage_overrun_150` | a metric's forecast quantity ≥ 150 % of its usual use (one alert per metric) |
| `usage_underrun_50` | a metric's forecast quantity ≤ 50 % of its usual use, once a quarter has passed |

For the usage kinds, `forecast_total` and `threshold` are quantities of `metric`, not money.

"Once per threshold" is a property of the data, not of the code path: an alert's primary key is derived from
(contract, org, period, kind), and the alert and its webhook deliveries are written in one database
transaction. Several hub processes or a restart cannot raise it twice.

Webhooks are signed like Stripe's: `X-LedgerHub-Timestamp: <unix seconds>` and
`X-LedgerHub-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`; receivers reject stale
timestamps (default tolerance 5 minutes) so a captured request cannot be replayed later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.portal.models import Alert, AlertRule

SIGNATURE_HEADER = "X-LedgerHub-Signature"
TIMESTAMP_HEADER = "X-LedgerHub-Timestamp"
EVENT_HEADER = "X-LedgerHub-Event"
DEFAULT_TOLERANCE = 300
UNDERRUN_AFTER = Decimal("0.25")


@dataclass(frozen=True)
class Crossing:
    kind: str
    threshold: Decimal
    message: str
    metric: str | None = None  # usage kinds: the metric, and threshold/forecast are its quantities
    forecast: Decimal | None = None  # usage kinds: the metric's forecast quantity


OVERRUN = Decimal("1.5")
UNDERRUN = Decimal("0.5")


def against_usual(value: Decimal, usual: Decimal, elapsed: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """The over-run and under-run thresholds `value` has passed, for spend and for use alike: at or above
    150 % of the usual level, or at or below 50 % once a quarter of the period has passed (None: not)."""
    if usual <= 0:
        return None, None
    over = usual * OVERRUN if value >= usual * OVERRUN else None
    under = usual * UNDERRUN if elapsed >= UNDERRUN_AFTER and value <= usual * UNDERRUN else None
    return over, under


def crossings(
    *, forecast: Decimal, budget: Decimal | None, usual: Decimal | None, elapsed: Decimal, currency: str
) -> list[Crossing]:
    """Every threshold the forecast is past right now (the caller raises only the new ones)."""
    found = []
    if budget is not None and budget > 0:
        if forecast >= budget * Decimal("0.8"):
            found.append(
                Crossing(
                    "budget_80",
                    budget * Decimal("0.8"),
                    f"Forecast {forecast} {currency} reaches 80% of the budget {budget} {currency}",
                )
            )
        if forecast >= budget:
            found.append(
                Crossing(
                    "budget_100",
                    budget,
                    f"Forecast {forecast} {currency} exceeds the budget {budget} {currency}",
                )
            )
    if usual is not None:
        over, under = against_usual(forecast, usual, elapsed)
        said, level = f"Forecast {forecast} {currency}", f"the usual {usual} {currency}"
        if over is not None:
            found.append(Crossing("overrun_150", over, f"{said} is 50% above {level}"))
        if under is not None:
            found.append(Crossing("underrun_50", under, f"{said} is less than half {level}"))
    return found


def usage_crossings(
    *, forecast: Mapping[str, Decimal], usual: Mapping[str, Decimal], elapsed: Decimal
) -> list[Crossing]:
    """Every metric whose forecast quantity is past its usual use by the same rules as spending."""
    found = []
    for metric, level in sorted(usual.items()):
        quantity = forecast.get(metric)
        if quantity is None:
            continue
        over, under = against_usual(quantity, level, elapsed)
        if over is not None:
            found.append(Crossing("usage_overrun_150", over,
                                  f"Forecast use of {metric}: {quantity}, 50% above the usual {level}",
                                  metric, quantity))
        if under is not None:
            found.append(Crossing("usage_underrun_50", under,
                                  f"Forecast use of {metric}: {quantity}, less than half the usual {level}",
                                  metric, quantity))
    return found


def alert_id(contract_id: str, org: str, period: str, kind: str, metric: str | None = None) -> str:
    return f"alert-{contract_id}-{org}-{period}-{kind}" + (f"-{metric}" if metric else "")


# --- webhook signatures -----------------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: f"v1={mac}"}


def verify_webhook(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        stamp = int(lowered[TIMESTAMP_HEADER.lower()])
        given = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        return False
    expected = sign_webhook(secret, body, stamp)[SIGNATURE_HEADER]
    # compared as bytes: compare_digest raises TypeError on a non-ASCII str, and a forged header must
    # be a plain "no", not a crash in the receiver
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def alert_payload(alert: Alert) -> bytes:
    return json.dumps(
        {"type": "alert.raised", "alert": alert_view(alert)}, sort_keys=True, separators=(",", ":")
    ).encode()


def alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "contract_id": alert.contract_id,
        "org": alert.org,
        "period": alert.period,
        "kind": alert.kind,
        "metric": alert.metric,
        "message": alert.message,
        "forecast_total": alert.forecast_total,
        "threshold": alert.threshold,
        "currency": alert.currency,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
    }


def rule_view(rule: AlertRule | None, contract_id: str, org: str) -> dict[str, Any]:
    if rule is None:
        return {"contract_id": contract_id, "org": org, "budget": None, "usual_level": None,
                "usual_usage": {}, "webhooks": []}
    hooks = json.loads(rule.webhooks or "[]")
    # secrets are write-only: the API shows that one is set, never its value
    return {
        "contract_id": rule.contract_id,
        "org": rule.org,
        "budget": rule.budget,
        "usual_level": rule.usual_level,
        "usual_usage": json.loads(rule.usual_usage or "{}"),
        "webhooks": [{"url": h["url"], "secret_set": bool(h.get("secret"))} for h in hooks],
    }


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# Enqueues one webhook delivery inside the caller's database transaction (the delivery engine's outbox).
WebhookEnqueue = Callable[[Session, Alert, Mapping[str, str], bytes], None]


class AlertService:
    """Rules, evaluation and the alert list. `usage_of(contract_id, org)` returns the usage endpoint's
    answer (cost to date and forecast) so alerts use exactly the forecast the portal shows."""

    def __init__(
        self,
        db: sessionmaker[Session],
        usage_of: Callable[[str, str], Mapping[str, Any]],
        enqueue: WebhookEnqueue | None = None,
    ) -> None:
        self.db = db
        self.usage_of = usage_of
        self.enqueue = enqueue

    def set_rule(
        self,
        contract_id: str,
        org: str,
        *,
        budget: str | None,
        usual_level: str | None,
        webhooks: list[Mapping[str, str]] | None,
        usual_usage: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self.db.begin() as session:
            rule = session.scalar(
                select(AlertRule).where(AlertRule.contract_id == contract_id, AlertRule.org == org)
            )
            if rule is None:
                rule = AlertRule(contract_id=contract_id, org=org)
                session.add(rule)
            rule.budget, rule.usual_level = budget, usual_level
            rule.usual_usage = json.dumps(dict(usual_usage or {}), sort_keys=True) if usual_usage else None
            if webhooks is not None:
                rule.webhooks = json.dumps(
                    [{"url": h["url"], "secret": h.get("secret", "")} for h in webhooks]
                )
            rule.updated_at = dt.datetime.now(dt.UTC)
            session.flush()
            return rule_view(rule, contract_id, org)

    def get_rule(self, contract_id: str, org: str) -> dict[str, Any]:
        with self.db() as session:
            rule = session.scalar(
                select(AlertRule).where(AlertRule.contract_id == contract_id, AlertRule.org == org)
            )
            return rule_view(rule, contract_id, org)

    def alerts(self, *, org: str | None, contract_id: str | None = None) -> list[dict[str, Any]]:
        with self.db() as session:
            query = select(Alert).order_by(Alert.created_at, Alert.id)
            if org is not None:
                query = query.where(Alert.org == org)
            if contract_id is not None:
                query = query.where(Alert.contract_id == contract_id)
            return [alert_view(a) for a in session.scalars(query)]

    def evaluate_all(self) -> list[str]:
        """Evaluate every rule; returns the ids of alerts raised by this call."""
        with self.db() as session:
            rules = [(r.contract_id, r.org) for r in session.scalars(select(AlertRule))]
        raised: list[str] = []
        for contract_id, org in rules:
            raised += self.evaluate(contract_id, org)
        return raised

    def evaluate(self, contract_id: str, org: str) -> list[str]:
        with self.db() as session:
            rule = session.scalar(
                select(AlertRule).where(AlertRule.contract_id == contract_id, AlertRule.org == org)
            )
            if rule is None:
                return []
            budget, usual = _decimal(rule.budget), _decimal(rule.usual_level)
            usual_use = {m: d for m, v in json.loads(rule.usual_usage or "{}").items()
                         if (d := _decimal(v)) is not None}
            hooks = json.loads(rule.webhooks or "[]")
        usage = self.usage_of(contract_id, org)
        forecast = usage.get("forecast") or {}
        total = _decimal(forecast.get("total"))
        if total is None:
            return []
        elapsed = _decimal(forecast.get("elapsed_fraction")) or Decimal(0)
        currency = str((usage.get("invoice") or {}).get("currency") or usage.get("currency") or "")
        metric_forecast = {m: d for m, v in (forecast.get("metrics") or {}).items()
                           if (d := _decimal(v)) is not None}
        raised = []
        found = crossings(forecast=total, budget=budget, usual=usual, elapsed=elapsed, currency=currency)
        found += usage_crossings(forecast=metric_forecast, usual=usual_use, elapsed=elapsed)
        for crossing in found:
            ident = alert_id(contract_id, org, usage["period"], crossing.kind, crossing.metric)
            amount = total if crossing.forecast is None else crossing.forecast
            if self._raise(ident, contract_id, org, usage["period"], crossing, amount, currency, hooks):
                raised.append(ident)
        return raised

    def _raise(
        self,
        ident: str,
        contract_id: str,
        org: str,
        period: str,
        crossing: Crossing,
        total: Decimal,
        currency: str,
        hooks: list[dict[str, str]],
    ) -> bool:
        try:
            with self.db.begin() as session:
                if session.get(Alert, ident) is not None:
                    return False
                alert = Alert(
                    id=ident,
                    contract_id=contract_id,
                    org=org,
                    period=period,
                    kind=crossing.kind,
                    metric=crossing.metric,
                    message=crossing.message,
                    forecast_total=str(total),
                    threshold=str(crossing.threshold),
                    currency=currency[:3] or "XXX",
                    created_at=dt.datetime.now(dt.UTC),
                )
                session.add(alert)
                session.flush()
                if self.enqueue is not None:
                    body = alert_payload(alert)
                    for hook in hooks:
                        self.enqueue(session, alert, hook, body)
        except IntegrityError:
            return False  # another process raised it first: still exactly one alert
        return True
