"""Amended contracts in a proof bundle (ADR 0046, ADR 0048 "Later"): what `hub.audit.evidence` rates with.

The bundle's `contract` is the record as accepted (version 1). The plan versions in force when the
invoice was issued are in the contract record the closing transaction wrote (it sets
`last_closed_period`; both parties endorse it, as they endorse the invoice it writes beside it). The
verifier takes from that record only what an amendment may change (the pricing, `versions`, an agreed
`end` and `ended_by`), checks that version 1 is the contract as accepted, and rates as the chaincode does:
each segment of the period under its version (`chaincode.proration`), late usage under the version(s) in
force in the period it belongs to (`chaincode.late`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import localcontext
from typing import Any

from chaincode import proration, rating
from chaincode.money import EXACT, ZERO, format_decimal

AMENDABLE = (*proration.PRICING_KEYS, "versions", "end", "ended_by")


def at_close(agreed: Mapping[str, Any], written: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """(the contract to rate with, a problem or ""): `agreed` with the amendable fields of `written`
    (the record the closing transaction wrote) when that record has plan versions."""
    if not isinstance(written, Mapping) or not written.get("versions"):
        return dict(agreed), ""
    versions = written["versions"]
    if not isinstance(versions, list) or not all(isinstance(v, Mapping) for v in versions):
        return dict(agreed), "plan versions are unreadable"
    if dict(versions[0].get("plan") or {}) != proration.pricing_of(agreed):
        return dict(agreed), "plan version 1 is not the contract as accepted"
    return {**agreed, **{k: written.get(k) for k in AMENDABLE}}, ""


def rated_base(
    contract: Mapping[str, Any], plan: rating.Plan, period: str, readings: list[rating.ReadingIn]
) -> dict[str, Any] | None:
    """The period's own money part of an amended contract, as `chaincode.tx.versioned.rated_period`
    rates it (each segment under its version; a whole-period segment prorates by 1, so it equals rating
    the aggregate); None for a contract never amended."""
    if not contract.get("versions"):
        return None
    segs = proration.segments(contract, plan, period)
    if not segs:
        return None
    lines, subtotal, _ = proration.rate_segments(contract, plan, period, segs, readings)
    cur = plan.currency
    with localcontext(EXACT):
        subtotal = rating.round_money(subtotal, cur)
        tax = rating.round_money(subtotal * plan.tax_rate if plan.tax_rate is not None else ZERO, cur)
        total = rating.round_money(subtotal + tax, cur)
    return {"lines": lines, "subtotal": format_decimal(subtotal), "tax": format_decimal(tax),
            "total": format_decimal(total)}
