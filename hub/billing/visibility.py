"""Who may see what: the one visibility rule, used by the ledger look-ups (hub/services.py), the routers'
read-model lists, the portal and ingestion (ADR 0062).

A principal sees a contract (and its invoices, usage, bookings) only when its org is the contract's
provider or customer, or when it is an auditor; an asset only when its org registered it, or as an
auditor. Anything else answers exactly like an unknown id (404), so ids of other parties' objects cannot
be probed. `visible_to` builds the SQL filter of a read-model query from the same rule, so a list can never
show what a look-up would refuse.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_

from hub.errors import NotFound
from hub.principal import Principal


def may_see(principal: Principal, provider: str, customer: str) -> bool:
    """May `principal` see an object of the contract between `provider` and `customer`?"""
    if principal.role == "auditor":
        return True
    if principal.role == "provider":
        return principal.org == provider
    if principal.role == "customer":
        return principal.org == customer
    # operators and devices act on contracts of their org but do not read them through these routes
    return principal.org in {provider, customer}


def may_see_asset(principal: Principal, provider: str | None) -> bool:
    """An asset is its registering provider's (a device token acts for that org), and every auditor's."""
    return principal.is_auditor or provider == principal.org


def visible_to(principal: Principal, model: Any) -> list[ColumnElement[bool]]:
    """`may_see` as SQL over a read model with `provider` and `customer` columns: the WHERE clauses that
    keep exactly the rows the principal may see (none for an auditor)."""
    if principal.role == "auditor":
        return []
    if principal.role == "provider":
        return [model.provider == principal.org]
    if principal.role == "customer":
        return [model.customer == principal.org]
    return [or_(model.provider == principal.org, model.customer == principal.org)]


def not_visible(code: str, kind: str, ident: str) -> NotFound:
    """The 404 of an object that is unknown or not visible: the two are the same answer."""
    return NotFound(code, f"Unknown {kind}", f"no {kind} {ident!r} visible to this caller")
