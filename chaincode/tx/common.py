"""What every transaction function needs around the `Stub`: typed reads, canonical writes, one event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from chaincode import keys, rating
from chaincode.errors import ChaincodeError
from chaincode.model import canonical, load_record
from chaincode.stub import Stub


class Tx:
    """One transaction's view of the ledger.

    Fabric's GetState does not see the transaction's own writes (the InMemoryStub does), so code that needs
    to see what it wrote earlier in the same transaction keeps that itself; `Tx.written` holds every record
    written through `put`, and `get` consults it first so both ledgers behave alike.
    """

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.tx_id: str = stub.tx_id
        self.timestamp: dt.datetime = stub.tx_timestamp()
        self.creator: str = stub.creator_msp_id()
        self.written: dict[str, bytes] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.written:
            return load_record(self.written[key])
        raw = self.stub.get_state(key)
        return load_record(raw) if raw else None

    def put(self, key: str, record: Any) -> bytes:
        value = canonical(record)
        self.stub.put_state(key, value)
        self.written[key] = value
        return value

    def put_raw(self, key: str, value: bytes) -> None:
        self.stub.put_state(key, value)
        self.written[key] = value

    def event(self, name: str, payload: dict[str, Any]) -> None:
        self.stub.set_event(name, canonical(payload))

    def scan(self, object_type: str, attributes: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, value in self.stub.get_state_by_partial_composite_key(object_type, attributes):
            yield key, load_record(value)

    # typed lookups with their "unknown" refusal
    def asset(self, asset_id: str) -> dict[str, Any]:
        record = self.get(keys.asset(asset_id))
        if record is None:
            raise ChaincodeError("unknown_asset", f"asset {asset_id} is not registered", asset_id=asset_id)
        return record

    def contract(self, contract_id: str) -> dict[str, Any]:
        record = self.get(keys.contract(contract_id))
        if record is None:
            raise ChaincodeError(
                "unknown_contract", f"contract {contract_id} does not exist", contract_id=contract_id
            )
        return record

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        record = self.get(keys.invoice(invoice_id))
        if record is None:
            raise ChaincodeError(
                "unknown_invoice", f"invoice {invoice_id} does not exist", invoice_id=invoice_id
            )
        return record


def parse_plan(record: dict[str, Any]) -> rating.Plan:
    """The stored contract's plan. It was validated when proposed, so a failure here means the rating
    rules changed under a live contract: a clear refusal (`invalid_plan`), not a crash."""
    try:
        return rating.parse_plan(record)
    except rating.PlanError as exc:
        raise ChaincodeError(
            "invalid_plan", f"stored plan of {record.get('id')} no longer parses: {exc}", errors=exc.errors
        ) from exc
