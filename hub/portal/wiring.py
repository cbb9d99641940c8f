"""The portal's alert service, built once per app on first use and shared by the alert routes, the chart
routes (the caller's budget) and the scheduler's `evaluate-alerts` job. Alert webhooks ride the ERP delivery
outbox when the delivery engine is wired (hub/delivery/webhooks.py), else whatever a test or configure hook
put on `services.webhook_enqueue`."""

from __future__ import annotations

from typing import Any

from hub.billing.usage import usage_with_forecast
from hub.delivery.webhooks import enqueue_webhook
from hub.portal.alerts import AlertService
from hub.scheduler import register_job
from hub.store.usage_days import UsageDays


def webhook_enqueue(services: Any) -> Any:
    """Where alert and bank webhooks are queued: the injected one, else the delivery outbox when the
    delivery engine runs, else nowhere (None: webhooks are not sent)."""
    if services.webhook_enqueue is not None:
        return services.webhook_enqueue
    return enqueue_webhook if services.delivery is not None else None


def alert_service(services: Any) -> AlertService:
    """`services.alerts`, built on first use. `services` is the app's `hub.api.deps.Services`."""
    if services.alerts is None:
        services.alerts = AlertService(
            services.db,
            lambda cid, org: usage_with_forecast(services.gateway.client, cid, org, services.now()),
            webhook_enqueue(services),
        )
    return services.alerts


def usage_days(services: Any) -> UsageDays:
    """`services.usage_days` (the app wires it), or one built on first use for a hand-wired `Services`."""
    if services.usage_days is None:
        services.usage_days = UsageDays(services.gateway, services.db)
    return services.usage_days


def _evaluate_job(services: Any) -> None:
    alert_service(services).evaluate_all()


register_job("evaluate-alerts", _evaluate_job, seconds=30)
