"""Shared assets and their bookings (ADR 0049).

An asset registered with `"shared": true` may be in several active contracts at once (with different
customers); accepting such a contract does not bind the asset to it. Which contract a reading belongs to
is decided by booking windows agreed on the ledger: one party of a contract proposes a booking of a shared
asset of that contract for [start, end) (`ProposeBooking`), the other party accepts it (`AcceptBooking`,
endorsed by both orgs: the booking key carries their key-level policy from the proposal on). A booking
that overlaps an accepted booking of the same asset is refused (`booking_overlap`), at proposal and again
at acceptance; one outside the contract's term is `booking_outside_contract`.

A usage message from a shared asset is routed by its readings' timestamps: every reading must fall in an
accepted booking, all of one contract (`no_booking` / `booking_mismatch` otherwise); the message is then
judged as a message of that contract. Keys: `booking~{asset_id}~{booking_id}`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chaincode import rating
from chaincode.errors import ChaincodeError
from chaincode.model import ACTIVE, PROPOSED, format_ts, require_id, require_str
from chaincode.stub import create_composite_key
from chaincode.tx.common import Tx

BOOKING = "booking"


def booking_key(asset_id: str, booking_id: str) -> str:
    return create_composite_key(BOOKING, [asset_id, booking_id])


def _instant(body: dict[str, Any], field: str) -> dt.datetime:
    text = require_str(body, field)
    try:
        return rating.parse_timestamp(text)
    except ValueError as exc:
        raise ChaincodeError("invalid_argument", f"{field}: {exc}", field=field) from exc


def _accepted(tx: Tx, asset_id: str) -> list[dict[str, Any]]:
    return [r for _, r in tx.scan(BOOKING, [asset_id]) if r.get("status") == ACTIVE]


def _check_overlap(tx: Tx, asset_id: str, booking_id: str, start: dt.datetime, end: dt.datetime) -> None:
    for other in _accepted(tx, asset_id):
        if other["id"] == booking_id:
            continue
        o_start, o_end = rating.parse_timestamp(other["start"]), rating.parse_timestamp(other["end"])
        if start < o_end and o_start < end:
            # the other booking's contract is not named: it may be another customer's
            raise ChaincodeError(
                "booking_overlap",
                f"asset {asset_id} is already booked from {other['start']} to {other['end']}",
                asset_id=asset_id,
                start=other["start"],
                end=other["end"],
            )


def propose_booking(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ProposeBooking {"asset_id", "id", "contract_id", "start", "end"}` by a party of the contract.
    The same proposal again returns what is stored."""
    asset_id = require_id(body, "asset_id")
    booking_id = require_id(body, "id")
    contract_id = require_id(body, "contract_id")
    start, end = _instant(body, "start"), _instant(body, "end")
    asset = tx.asset(asset_id)
    contract = tx.contract(contract_id)
    if tx.creator not in (contract["provider"], contract["customer"]):
        raise ChaincodeError("forbidden", f"{tx.creator} is not a party to {contract_id}", msp_id=tx.creator)
    key = booking_key(asset_id, booking_id)
    existing = tx.get(key)
    fields = {"asset_id": asset_id, "id": booking_id, "contract_id": contract_id,
              "start": format_ts(start), "end": format_ts(end)}
    if existing is not None:
        if all(existing.get(k) == v for k, v in fields.items()):
            return existing
        raise ChaincodeError("booking_exists", f"booking {booking_id} of {asset_id} already exists",
                             booking_id=booking_id)
    if not asset.get("shared"):
        raise ChaincodeError("asset_not_shared", f"asset {asset_id} is not a shared asset", asset_id=asset_id)
    if asset_id not in contract.get("assets", []):
        raise ChaincodeError("booking_outside_contract", f"asset {asset_id} is not in contract {contract_id}",
                             asset_id=asset_id)
    if contract["status"] != ACTIVE:
        raise ChaincodeError("contract_not_active", f"contract {contract_id} is {contract['status']}",
                             status=contract["status"])
    if not start < end:
        raise ChaincodeError("invalid_argument", "a booking's start must be before its end", field="end")
    c_start, c_end = rating.contract_bounds(rating.parse_plan(contract))
    if start < c_start or (c_end is not None and end > c_end):
        raise ChaincodeError(
            "booking_outside_contract",
            f"the booking lies outside the term of contract {contract_id}",
            contract_start=format_ts(c_start),
            contract_end=format_ts(c_end) if c_end is not None else None,
        )
    _check_overlap(tx, asset_id, booking_id, start, end)
    record = {**fields, "provider": contract["provider"], "customer": contract["customer"],
              "status": PROPOSED, "proposed_by": tx.creator, "proposed_tx": tx.tx_id,
              "accepted_tx": None}
    tx.put(key, record)
    tx.stub.set_key_endorsement(key, [contract["provider"], contract["customer"]])
    return record


def accept_booking(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`AcceptBooking {"asset_id", "id"}` by the other party: PROPOSED -> ACTIVE (both orgs endorse)."""
    asset_id = require_id(body, "asset_id")
    booking_id = require_id(body, "id")
    record = _booking(tx, asset_id, booking_id)
    if tx.creator not in (record["provider"], record["customer"]):
        raise ChaincodeError(
            "unknown_booking", f"no booking {booking_id} of {asset_id}", booking_id=booking_id
        )
    if record["status"] == ACTIVE:
        return record
    if tx.creator == record["proposed_by"]:
        raise ChaincodeError(
            "forbidden", "the other party of the contract accepts a booking", msp_id=tx.creator
        )
    contract = tx.contract(record["contract_id"])
    if contract["status"] != ACTIVE:
        raise ChaincodeError("contract_not_active", f"contract {contract['id']} is {contract['status']}",
                             status=contract["status"])
    start, end = rating.parse_timestamp(record["start"]), rating.parse_timestamp(record["end"])
    _check_overlap(tx, asset_id, booking_id, start, end)
    record = {**record, "status": ACTIVE, "accepted_tx": tx.tx_id}
    key = booking_key(asset_id, booking_id)
    tx.put(key, record)
    tx.stub.set_key_endorsement(key, [record["provider"], record["customer"]])
    return record


def _booking(tx: Tx, asset_id: str, booking_id: str) -> dict[str, Any]:
    record = tx.get(booking_key(asset_id, booking_id))
    if record is None:
        raise ChaincodeError(
            "unknown_booking", f"no booking {booking_id} of {asset_id}", booking_id=booking_id
        )
    return record


def get_booking(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    return _booking(tx, require_id(body, "asset_id"), require_id(body, "id"))


def list_bookings(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ListBookings {"asset_id"}` -> `{"bookings": [...]}` in key order (the hub filters by party)."""
    asset_id = require_id(body, "asset_id")
    tx.asset(asset_id)
    return {"bookings": [r for _, r in tx.scan(BOOKING, [asset_id])]}


def contract_of_readings(tx: Tx, asset: dict[str, Any], readings: Any) -> str:
    """The contract a shared asset's message belongs to: the one whose accepted booking holds every
    reading's timestamp. A timestamp that does not parse is left to the reading checks (it cannot be
    routed, so the message is refused either way)."""
    bookings = [
        (rating.parse_timestamp(b["start"]), rating.parse_timestamp(b["end"]), b["contract_id"])
        for b in _accepted(tx, asset["id"])
    ]
    found: dict[str, str] = {}
    outside: list[str] = []
    for item in readings:
        rid = item.get("id") if isinstance(item, dict) else None
        try:
            ts = rating.parse_timestamp(item.get("timestamp") if isinstance(item, dict) else None)
        except ValueError as exc:
            ids = [rid] if isinstance(rid, str) else []
            raise ChaincodeError("invalid_timestamp", str(exc), reading_ids=ids) from exc
        hit = next((c for s, e, c in bookings if s <= ts < e), None)
        if hit is None:
            outside.append(str(rid))
        else:
            found[str(rid)] = hit
    if outside:
        message = f"no accepted booking of shared asset {asset['id']} holds the reading's time"
        raise ChaincodeError(
            "no_booking", message, reading_ids=outside,
            readings=[{"reading_id": rid, "code": "no_booking", "message": message} for rid in outside],
        )
    contracts = sorted(set(found.values()))
    if len(contracts) != 1:
        raise ChaincodeError(
            "booking_mismatch",
            "the readings of one message fall in bookings of different contracts: send them separately",
            reading_ids=sorted(found),
        )
    return contracts[0]
