"""Rebuilding a message's first answer from the ledger, when the ledger refused it as a repeat of itself
(another replica raced on the same id, or a commit's answer was lost before the hub recorded it)."""

from __future__ import annotations

import logging
from typing import Any

from chaincode.errors import ChaincodeError
from chaincode.periods import parse_timestamp, period_of
from hub.ingest_message import digest
from hub.ledger.base import ChaincodeRejected, LedgerError

log = logging.getLogger("ledgerhub.ingest")

Answer = tuple[int, dict[str, Any]]  # (status, JSON body): the answer ingestion records and replays


def earlier_answer(gw: Any, key: tuple[str, str], raw: dict[str, Any], message_digest: str,
                   org: str) -> Answer | None:
    """The ledger refused the message as a repeat, but was the repeat of *this very message*, recorded by
    an earlier transaction whose answer this hub never stored (another replica racing on the same id,
    or a commit whose answer was lost)? Then the first answer is rebuilt from the ledger, exactly as it
    was: accepted = the readings recorded under this message id, duplicates = the others, with that
    transaction's id and block. Any doubt returns None and the refusal stands."""
    device_id, message_id = key
    client = gw.client
    try:
        stored = client.get_usage_message(device_id, message_id, as_org=org)
        if digest(dict(stored.raw)) != message_digest:
            return None
        asset = client.get_asset(device_id, as_org=org)
        contract_id = asset.contract_id or _booked_contract(client, device_id, raw, org)
        if contract_id is None:
            return None
        contract = client.get_contract(contract_id, as_org=org)
        periods = sorted({period_of(parse_timestamp(r["timestamp"]), contract.timezone)
                          for r in raw["readings"]})
        mine: dict[str, str] = {}
        for period in periods:
            for record in client.get_readings(contract.id, period, as_org=org).readings:
                # a reading is (device, reading id); another device may use the same message id
                if (record.get("device_id"), record.get("message_id")) == (device_id, message_id):
                    mine[record["id"]] = record["tx_id"]
        if not mine or len(set(mine.values())) != 1:
            return None
        tx_id = next(iter(mine.values()))
        block = gw.ledger.tx(tx_id).block
    except (ChaincodeError, ChaincodeRejected, LedgerError, KeyError, TypeError, ValueError) as exc:
        # no such message on the ledger is the usual case (other messages hold those readings): not a
        # warning; anything else is, and in every case the refusal stands
        if getattr(exc, "code", None) != "unknown_message":
            log.warning("could not rebuild the first answer of %s/%s", device_id, message_id,
                        exc_info=True)
        return None
    ids = [r["id"] for r in raw["readings"]]
    return 202, {"accepted": len(mine), "duplicates": [i for i in ids if i not in mine],
                 "tx_id": tx_id, "block": block}


def _booked_contract(client: Any, device_id: str, message: dict[str, Any], org: str) -> str | None:
    """The contract a shared asset's message went to (ADR 0049): the accepted booking that holds its
    first reading (the chaincode recorded it only if one booking holds them all)."""
    first = parse_timestamp(message["readings"][0]["timestamp"])
    for booking in client.list_bookings(device_id, as_org=org).bookings:
        window = parse_timestamp(booking.start), parse_timestamp(booking.end)
        if booking.status == "ACTIVE" and window[0] <= first < window[1]:
            return str(booking.contract_id)
    return None
