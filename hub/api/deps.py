"""Request dependencies shared by every router: who is calling, and the services they act through.

Routers get the caller with `Depends(require_roles("provider"))` and the services with
`Depends(get_services)`; the app factory puts a `Services` on `app.state.services`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Request

from hub.api.problems import ApiError
from hub.config import Role, Settings, secret_value


@dataclass(frozen=True)
class Principal:
    org: str
    role: Role
    token_id: str  # a short, non-secret fingerprint of the token for logs
    scope: Literal["org", "platform"] = "org"

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"

    @property
    def is_platform_operator(self) -> bool:
        """An operator of the hub itself (explicit `"scope": "platform"` on the token, ADR 0029)."""
        return self.role == "operator" and self.scope == "platform"

    def org_filter(self) -> str | None:
        """The org whose objects this caller may see in org-owned lists; None for a platform operator."""
        return None if self.is_platform_operator else self.org

    def owns(self, org: str) -> bool:
        """May this caller see and act on an object that belongs to `org` (deliveries, keys)?"""
        return self.is_platform_operator or org == self.org


@dataclass
class Services:
    """Everything a request may use. Optional parts are None when that area is not configured."""

    settings: Settings
    ledger: Any  # hub.ledger.base.Ledger
    db: Any  # sqlalchemy.orm.sessionmaker
    keys: Any = None  # hub.keys key manager
    delivery: Any = None  # hub.delivery service
    extras: dict[str, Any] = field(default_factory=dict)


def get_services(request: Request) -> Services:
    return request.app.state.services


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "Missing bearer token", "Send Authorization: Bearer <token>.")
    settings: Settings = get_services(request).settings
    grant = None
    token_bytes = token.encode()
    for candidate, value in settings.tokens.items():
        # compare against every token, in constant time, so timing does not reveal a prefix match
        if hmac.compare_digest(secret_value(candidate).encode(), token_bytes):
            grant = value
    if grant is None:
        raise ApiError(401, "invalid_token", "Invalid bearer token")
    if grant.expires_at and dt.datetime.fromisoformat(grant.expires_at) <= dt.datetime.now(dt.UTC):
        raise ApiError(401, "token_expired", "Bearer token expired")
    return Principal(org=grant.org, role=grant.role, token_id=hashlib.sha256(token_bytes).hexdigest()[:12],
                     scope=grant.scope)


def require_roles(*roles: Role) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if principal.role not in roles:
            raise ApiError(
                403, "forbidden", "Not allowed for this role", f"role {principal.role!r} cannot do this"
            )
        return principal

    return dependency
