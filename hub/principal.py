"""Who is calling: the org and role a bearer token grants. Below the API layer, so services, ingestion and
the visibility rule (hub/billing/visibility.py) can take a caller without importing HTTP code; the API's
authentication (hub/api/deps.py) builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hub.config import Role


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
