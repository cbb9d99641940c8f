"""Lifecycle webhook subscriptions, per org (ADR 0053): `POST /v1/webhooks`, `GET /v1/webhooks`,
`DELETE /v1/webhooks/{id}`. The events and how they are signed and delivered: hub/delivery/lifecycle.py and
docs/integrators-guide.md."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy import func, select

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.delivery.egress import FORBIDDEN_CODE, EgressPolicy, EgressRefused, check_url, system_resolver
from hub.delivery.lifecycle import EVENT_TYPES, WebhookSubscription

router = APIRouter(tags=["webhooks"], responses=problem_responses(400, 401, 403, 404, 409, 422))
MANAGERS = ("provider", "customer", "operator")
MAX_PER_ORG = 10


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    secret: str = Field(min_length=16, max_length=200, description="shared secret for the HMAC signature")
    events: list[str] | None = Field(default=None, max_length=len(EVENT_TYPES),
                                     description=f"event types (default: all of {', '.join(EVENT_TYPES)})")


def view(sub: WebhookSubscription) -> dict[str, Any]:
    return {"id": sub.id, "org": sub.org, "url": sub.url, "events": json.loads(sub.events),
            "secret_set": bool(sub.secret), "since_block": sub.since_block,
            "created_at": sub.created_at.isoformat() if sub.created_at else None}


@router.post("/v1/webhooks", status_code=201,
             summary="Subscribe the caller's org to lifecycle events (provider, customer, operator)")
def subscribe(body: SubscriptionIn, principal: Principal = Depends(require_roles(*MANAGERS)),
              services: Services = Depends(get_services)) -> dict[str, Any]:
    events = list(dict.fromkeys(body.events)) if body.events is not None else list(EVENT_TYPES)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        raise ApiError(422, "unknown_event_type", "Unknown event type",
                       f"{unknown[0]!r} is not one of {', '.join(EVENT_TYPES)}" if unknown
                       else "name at least one event type", events=unknown)
    url = str(body.url)
    try:  # checked again, freshly resolved, at every send (hub/delivery/webhooks.py)
        check_url(url, EgressPolicy.from_settings(services.settings),
                  resolve=services.resolver or system_resolver, must_resolve=False)
    except EgressRefused as exc:
        raise ApiError(400, FORBIDDEN_CODE, "Webhook URL not allowed", f"{url!r}: {exc.reason}", url=url,
                       reason=exc.reason) from None
    since = services.ledger.height()  # events committed from now on: history is not replayed to it
    with services.db.begin() as session:
        count = session.scalar(select(func.count()).select_from(WebhookSubscription)
                               .where(WebhookSubscription.org == principal.org))
        if (count or 0) >= MAX_PER_ORG:
            raise ApiError(409, "too_many_webhooks", "Too many webhooks",
                           f"an org has at most {MAX_PER_ORG} webhook subscriptions; delete one first")
        sub = WebhookSubscription(id="whs-" + uuid.uuid4().hex[:16], org=principal.org, url=url,
                                  secret=body.secret, events=json.dumps(events), since_block=since)
        session.add(sub)
        session.flush()
        return view(sub)


@router.get("/v1/webhooks", summary="The caller's org's lifecycle webhook subscriptions")
def list_subscriptions(principal: Principal = Depends(require_roles(*MANAGERS)),
                       services: Services = Depends(get_services)) -> dict[str, Any]:
    with services.db() as session:
        rows = session.scalars(select(WebhookSubscription).where(WebhookSubscription.org == principal.org)
                               .order_by(WebhookSubscription.created_at, WebhookSubscription.id))
        return {"webhooks": [view(s) for s in rows], "event_types": list(EVENT_TYPES)}


@router.delete("/v1/webhooks/{subscription_id}", status_code=204,
               summary="Unsubscribe (events already queued are still delivered)")
def unsubscribe(subscription_id: str, principal: Principal = Depends(require_roles(*MANAGERS)),
                services: Services = Depends(get_services)) -> Response:
    with services.db.begin() as session:
        sub = session.get(WebhookSubscription, subscription_id)
        if sub is None or sub.org != principal.org:  # another org's subscription: as if unknown
            raise ApiError(404, "unknown_webhook", "Unknown webhook", f"no webhook {subscription_id!r}")
        session.delete(sub)
    return Response(status_code=204)
