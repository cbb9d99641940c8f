"""Bookings of shared assets (ADR 0049): one party of a contract proposes a window, the other accepts it.

Who sees what: a booking is visible to the two parties of its contract and to auditors, nobody else; a
booking of another customer's contract answers 404 exactly like an unknown one, and a list shows only the
caller's own. The asset must be a shared asset in the contract (`asset_not_shared`,
`booking_outside_contract`); overlapping an accepted booking is `booking_overlap`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import GatewayDep, Principal, require_roles
from hub.api.problems import problem_responses
from hub.billing.answers import Booking
from hub.billing.visibility import may_see
from hub.errors import NotFound
from hub.ledger.base import ChaincodeRejected
from hub.services import LedgerGateway

router = APIRouter(prefix="/v1/assets", tags=["bookings"],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))

ID = r"^[A-Za-z0-9._:-]+$"


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, pattern=ID, description="booking id, unique per asset")
    contract_id: str = Field(min_length=1, max_length=200, pattern=ID)
    start: str = Field(min_length=1, max_length=64, description="RFC 3339 instant, inclusive")
    end: str = Field(min_length=1, max_length=64, description="RFC 3339 instant, exclusive")


def _unknown(asset_id: str, booking_id: str) -> NotFound:
    return NotFound("unknown_booking", "Unknown booking",
                    f"no booking {booking_id!r} of asset {asset_id!r} visible to this caller")


def _visible(principal: Principal, booking: Booking) -> bool:
    return may_see(principal, booking.provider, booking.customer)


def _unknown_asset(asset_id: str) -> NotFound:
    return NotFound("unknown_asset", "Unknown asset", f"no asset {asset_id!r}")


def _asset_known(gw: LedgerGateway, asset_id: str, principal: Principal) -> None:
    """The asset exists for the caller's org (a customer books a provider's shared asset: no ownership)."""
    try:
        gw.client.get_asset(asset_id, as_org=principal.org)
    except ChaincodeRejected as exc:
        if exc.code in {"unknown_asset", "forbidden"}:
            raise _unknown_asset(asset_id) from None
        raise


@router.post("/{asset_id}/bookings", status_code=201,
             summary="Propose a booking of a shared asset (a party of the contract) -> PROPOSED")
def propose_booking(
    asset_id: str,
    gw: GatewayDep,
    booking: BookingIn,
    principal: Principal = Depends(require_roles("provider", "customer")),
) -> JSONResponse:
    """A window `[start, end)` (RFC 3339) of a shared asset for one contract, proposed by either party;
    the other party accepts it. Refusals: `asset_not_shared` 409, `booking_outside_contract` 400 (asset not
    in the contract, or the window outside its term), `booking_overlap` 409 (overlaps an accepted booking;
    its contract is not named), `booking_exists` 409, `invalid_argument` 400 (start not before end),
    `unknown_asset` / `unknown_contract` 404 (also for a contract the caller is no party to). The same
    proposal again answers the stored booking. ADR 0049."""
    _asset_known(gw, asset_id, principal)
    gw.contract(booking.contract_id, principal)  # 404 unknown_contract unless the caller is a party
    gw.client.propose_booking(asset_id, booking.id, contract_id=booking.contract_id, start=booking.start,
                              end=booking.end, as_org=principal.org)
    record = gw.client.get_booking(asset_id, booking.id, as_org=principal.org)
    return JSONResponse(record.raw, status_code=201)


@router.post("/{asset_id}/bookings/{booking_id}/accept",
             summary="Accept a booking (the other party of the contract) -> ACTIVE; both orgs endorse")
def accept_booking(
    asset_id: str,
    gw: GatewayDep,
    booking_id: str,
    principal: Principal = Depends(require_roles("provider", "customer")),
) -> dict[str, Any]:
    """PROPOSED -> ACTIVE, endorsed by both orgs on the ledger; the overlap is checked again (a competing
    booking may have been accepted meanwhile: `booking_overlap`). The proposer gets `forbidden`, anyone
    outside the contract `unknown_booking`; accepting again answers the booking unchanged."""
    _get(gw, asset_id, booking_id, principal)
    gw.client.accept_booking(asset_id, booking_id, as_org=principal.org)
    return gw.client.get_booking(asset_id, booking_id, as_org=principal.org).raw


def _get(gw: LedgerGateway, asset_id: str, booking_id: str, principal: Principal) -> Booking:
    try:
        record = gw.client.get_booking(asset_id, booking_id, as_org=principal.org)
    except ChaincodeRejected as exc:
        if exc.code in {"unknown_booking", "unknown_asset", "forbidden", "invalid_argument"}:
            raise _unknown(asset_id, booking_id) from None
        raise
    if not _visible(principal, record):
        raise _unknown(asset_id, booking_id)
    return record


@router.get("/{asset_id}/bookings/{booking_id}", summary="A booking (its contract's parties, auditors)")
def get_booking(
    asset_id: str,
    gw: GatewayDep,
    booking_id: str,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    return _get(gw, asset_id, booking_id, principal).raw


@router.get("/{asset_id}/bookings", summary="Bookings of an asset the caller may see")
def list_bookings(
    asset_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    try:
        records = gw.client.list_bookings(asset_id, as_org=principal.org)
    except ChaincodeRejected as exc:
        if exc.code in {"unknown_asset", "forbidden", "invalid_argument"}:
            raise _unknown_asset(asset_id) from None
        raise
    return {"items": [b.raw for b in records.bookings if _visible(principal, b)]}
