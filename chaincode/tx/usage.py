"""RecordUsage: signed device messages in, readings and one aggregate per (contract, period) out.

Each message is judged on its own so one bad device does not fail a batch of good ones; a message is all
or nothing. The work that can be done once per message (signature, asset, contract, plan) is done once;
per reading only the checks that depend on the reading remain. Duplicate detection reads a message's
reading keys in one `get_multiple_states` round trip, and remembers this transaction's own writes because
Fabric's GetState does not return them.

A reading's identity is (device, reading id) (ADR 0026): its key holds the device id, under the layout the
contract records (`reading_key_version`; contracts from before it keep reading ids unique per contract).
A reading already recorded is a duplicate only when its content (the fields `rating.reading_hash` covers)
is the same; the same identity with other content is `reading_conflict`, which rejects the whole message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from chaincode import keys, rating
from chaincode import late as late_readings
from chaincode.errors import ChaincodeError
from chaincode.model import ACTIVE, CLOSED, canonical, canonical_flat, check_id, is_plain, load_record
from chaincode.signature import verify_message
from chaincode.tx import bookings, running
from chaincode.tx.common import Tx, parse_plan

FUTURE_TOLERANCE = dt.timedelta(minutes=5)


@dataclass
class ContractView:
    """What validating readings needs from a contract, computed once per transaction."""

    record: dict[str, Any]
    plan: rating.Plan
    start: dt.datetime
    end: dt.datetime | None
    key_version: int  # the contract's reading key layout (chaincode.keys)
    # the last period a reading fell in, as (start, end, "YYYY-MM"): readings of one message are nearly
    # always in one period, so most readings need a comparison instead of a timezone conversion
    last_period: tuple[dt.datetime, dt.datetime, str] | None = None

    def period_of(self, ts: dt.datetime) -> str:
        last = self.last_period
        if last is not None and last[0] <= ts < last[1]:
            return last[2]
        period = rating.period_of(ts, self.plan.timezone)
        start, end = rating.period_bounds(period, self.plan.timezone)
        self.last_period = (start, end, period)
        return period

    def reading_key(self, period: str, device_id: str, reading_id: str) -> str:
        return keys.reading_in_layout(self.key_version, self.record["id"], period, device_id, reading_id)


@dataclass
class Batch:
    """New readings of one (contract, period) in this transaction."""

    contract: ContractView
    readings: list[rating.ReadingIn] = field(default_factory=list)  # each with its digest


class MessageRejected(Exception):
    """One message refused; carries the per-message error of the RecordUsage answer."""

    def __init__(self, code: str, message: str, reading_ids: list[str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, "reading_ids": reading_ids or [], **details}


def contract_view(record: dict[str, Any]) -> ContractView:
    plan = parse_plan(record)
    start, end = rating.contract_bounds(plan)
    try:
        version = keys.reading_key_version(record)
    except ValueError as exc:  # a contract recorded by a newer chaincode: refuse, never guess its keys
        raise ChaincodeError("invalid_argument", f"contract {record.get('id')}: {exc}") from exc
    return ContractView(record, plan, start, end, version)


def reading_digest(raw: dict[str, Any]) -> int:
    """`rating.reading_hash` of a reading as validated: `raw` holds exactly the hashed fields (a unit test
    holds the two equal), so the faster flat encoder serves."""
    return int.from_bytes(hashlib.sha256(canonical_flat(raw)).digest(), "big")


# A reading's content: exactly the fields its digest (`rating.reading_hash`) covers.
CONTENT_FIELDS = ("id", "device_id", "metric", "quantity", "timestamp", "unit_price")


def same_content(stored: dict[str, Any], raw: dict[str, Any]) -> bool:
    """Whether a recorded reading has the content of `raw` (a validated reading): field by field over the
    digest's fields, which is the digest comparison without hashing on the duplicate path."""
    return all(stored.get(k) == raw.get(k) for k in CONTENT_FIELDS)


def recorded_reading(value: bytes) -> dict[str, Any]:
    """A reading record on the ledger; one that cannot be read counts as other content (a conflict), never
    as the same reading."""
    try:
        record = orjson.loads(value)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


class UsageRecorder:
    """State of one RecordUsage transaction across its messages."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.contracts: dict[str, dict[str, Any] | None] = {}
        self.views: dict[str, ContractView] = {}
        self.closed: dict[tuple[str, str], bool] = {}
        self.batches: dict[tuple[str, str], Batch] = {}
        self.new_readings: dict[str, dict[str, Any]] = {}  # reading key -> content, written by this tx
        # late readings (chaincode.late): (contract, billed in, period) -> (plan, readings)
        self.late: dict[tuple[str, str, str], tuple[rating.Plan, list[rating.ReadingIn]]] = {}
        self.horizon = tx.timestamp + FUTURE_TOLERANCE

    # --- lookups cached for the transaction ---------------------------------------------------------
    def contract(self, contract_id: str) -> dict[str, Any] | None:
        if contract_id not in self.contracts:
            self.contracts[contract_id] = self.tx.get(keys.contract(contract_id))
        return self.contracts[contract_id]

    def view(self, contract_id: str) -> ContractView:
        if contract_id not in self.views:
            record = self.contract(contract_id)
            assert record is not None  # only called for a contract found active
            self.views[contract_id] = contract_view(record)
        return self.views[contract_id]

    def period_closed(self, contract_id: str, period: str) -> bool:
        k = (contract_id, period)
        if k not in self.closed:
            record = self.tx.get(keys.period(contract_id, period))
            self.closed[k] = record is not None and record.get("status") == CLOSED
        return self.closed[k]

    # --- one message ------------------------------------------------------------------------------
    def record(self, message: Any) -> dict[str, Any]:
        message_id = message.get("message_id") if isinstance(message, dict) else None
        device_id = message.get("device_id") if isinstance(message, dict) else None
        result: dict[str, Any] = {
            "message_id": message_id if isinstance(message_id, str) else None,
            "device_id": device_id if isinstance(device_id, str) else None,
            "status": "rejected",
            "accepted": 0,
            "duplicates": [],
        }
        try:
            accepted, duplicates = self._record(message)
        except MessageRejected as rej:
            result["error"] = rej.error
            return result
        except ChaincodeError as exc:
            result["error"] = {"code": exc.code, "message": exc.message, "reading_ids": [], **exc.details}
            return result
        result.update(status="accepted", accepted=accepted, duplicates=duplicates)
        return result

    def _record(self, message: Any) -> tuple[int, list[str]]:
        tx = self.tx
        if not isinstance(message, dict):
            raise MessageRejected("invalid_argument", "a usage message must be a JSON object")
        device_id = check_id(message.get("device_id"), "device_id")
        message_id = check_id(message.get("message_id"), "message_id")
        readings = message.get("readings")
        if not isinstance(readings, list) or not readings:
            raise MessageRejected("invalid_argument", "readings must be a non-empty list")
        asset = tx.asset(device_id)
        plain = is_plain(message)  # one walk over the message serves both encodings below
        verify_message(message, asset["public_key"], plain=plain)
        contract_id = asset.get("contract_id")
        if asset.get("shared"):  # routed by the asset's accepted bookings (ADR 0049)
            contract_id = bookings.contract_of_readings(tx, asset, readings)
        record = self.contract(contract_id) if contract_id else None
        if record is None or record["status"] != ACTIVE:
            raise MessageRejected(
                "contract_not_active",
                f"asset {device_id} is not in an active contract",
                contract_id=contract_id,
            )
        if tx.creator not in (record["provider"], record["customer"]):
            raise MessageRejected("forbidden", f"{tx.creator} is not a party to contract {contract_id}")
        view = self.view(contract_id)

        stored = canonical(message, plain=plain)
        msg_key = keys.usage_message(device_id, message_id)
        previous = tx.written.get(msg_key) or tx.stub.get_state(msg_key)
        if previous is not None and previous != stored:
            raise MessageRejected(
                "message_conflict", f"message id {message_id} was already recorded with other content"
            )

        parsed = self._validate(view, readings, device_id)
        reading_keys = [view.reading_key(period, device_id, r.id) for r, period, _ in parsed]
        on_ledger = tx.stub.get_multiple_states(reading_keys)
        duplicates: list[str] = []
        conflicts: list[str] = []
        fresh = []
        for (reading, period, raw), key, existing in zip(parsed, reading_keys, on_ledger, strict=True):
            if key in self.new_readings:  # checked first: Fabric's GetState does not see this tx's writes
                prior = self.new_readings[key]
            elif existing is not None:
                prior = recorded_reading(existing)
            else:
                fresh.append((reading, period, raw, key))
                continue
            (duplicates if same_content(prior, raw) else conflicts).append(reading.id)
        if conflicts:
            raise MessageRejected(
                "reading_conflict",
                f"{len(conflicts)} reading(s) of {device_id} already recorded with other content",
                reading_ids=conflicts,
                readings=[
                    {
                        "reading_id": rid,
                        "code": "reading_conflict",
                        "message": f"reading {rid} of {device_id} was already recorded with other content",
                    }
                    for rid in conflicts
                ],
            )
        # checked after the duplicate lookup: a resent reading of a closed period is a duplicate (the
        # device may stop resending it), only a new one is refused as late
        # (the contract's late-readings policy decides: period_closed, reading_too_late or billed later)
        closed = [(r.id, r.timestamp, p) for r, p, _, _ in fresh if self.period_closed(contract_id, p)]
        billed_in = late_readings.route(view.record, tx.timestamp, closed) if closed else {}
        if not fresh:
            raise MessageRejected(
                "duplicate_reading",
                "every reading of this message is already recorded",
                reading_ids=duplicates,
            )
        for reading, period, raw, key in fresh:
            stored_reading = {
                **raw,
                "contract_id": contract_id,
                "period": period,
                "message_id": message_id,
                "tx_id": tx.tx_id,
            }
            if reading.id in billed_in:  # a late reading: billed on the next invoice (chaincode.late)
                stored_reading["billed_in"] = billed_in[reading.id]
            tx.put_raw(key, canonical_flat(stored_reading))
            self.new_readings[key] = raw
            if reading.id in billed_in:
                plan_readings = self.late.setdefault(
                    (contract_id, billed_in[reading.id], period), (view.plan, [])
                )[1]
            else:
                plan_readings = self.batches.setdefault((contract_id, period), Batch(view)).readings
            plan_readings.append(
                rating.ReadingIn(
                    reading.id, reading.metric, reading.quantity, reading.timestamp, reading.unit_price,
                    reading_digest(raw), device_id,
                )
            )
        if previous is None:
            tx.put_raw(msg_key, stored)
        return len(fresh), duplicates

    def _validate(
        self, view: ContractView, readings: list[Any], device_id: str
    ) -> list[tuple[Any, str, dict[str, Any]]]:
        """Parse every reading; collect all problems, then reject the message naming the bad readings."""
        problems: list[dict[str, str]] = []
        parsed: list[tuple[Any, str, dict[str, Any]]] = []
        seen: set[str] = set()
        plan = view.plan
        tz = plan.timezone
        for item in readings:
            rid = item.get("id") if isinstance(item, dict) else None
            try:
                parsed.append(self._reading(view, item, seen, tz, device_id))
            except ChaincodeError as exc:
                problems.append(
                    {
                        "reading_id": rid if isinstance(rid, str) else "",
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
            if isinstance(rid, str):
                seen.add(rid)
        if problems:
            code = problems[0]["code"]
            ids = [p["reading_id"] for p in problems if p["code"] == code]
            raise MessageRejected(code, problems[0]["message"], reading_ids=ids, readings=problems)
        return parsed

    def _reading(
        self, view: ContractView, item: Any, seen: set[str], tz: str, device_id: str
    ) -> tuple[Any, str, dict[str, Any]]:
        if not isinstance(item, dict):
            raise ChaincodeError("invalid_argument", "a reading must be a JSON object")
        rid = check_id(item.get("id"), "reading id")
        if rid in seen:
            raise ChaincodeError("invalid_argument", f"reading id {rid} appears twice in the message")
        metric = item.get("metric")
        if not isinstance(metric, str) or metric not in view.plan.metrics:
            raise ChaincodeError("unknown_metric", f"metric {metric!r} is not in the contract's plan")
        try:
            quantity = rating.parse_quantity(item.get("quantity"))
        except ValueError as exc:
            raise ChaincodeError("invalid_quantity", str(exc)) from exc
        text_ts = item.get("timestamp")
        try:
            if not isinstance(text_ts, str):
                raise ValueError("timestamp must be a string")
            ts = rating.parse_timestamp(text_ts)
        except ValueError as exc:
            raise ChaincodeError("invalid_timestamp", str(exc)) from exc
        if ts < view.start or (view.end is not None and ts >= view.end):
            raise ChaincodeError("timestamp_outside_contract", f"{text_ts} is outside the contract's term")
        if ts > self.horizon:
            raise ChaincodeError("timestamp_in_future", f"{text_ts} is in the future")
        unit_price = None
        if "unit_price" in item:
            try:
                unit_price = rating.parse_unit_price(item["unit_price"])
            except ValueError as exc:
                raise ChaincodeError("invalid_quantity", f"unit_price: {exc}") from exc
        elif view.plan.requires_unit_price(metric):
            raise ChaincodeError(
                "missing_unit_price", f"metric {metric} is priced per reading: unit_price missing"
            )
        period = view.period_of(ts)
        raw = {
            "id": rid,
            "device_id": device_id,
            "metric": metric,
            "quantity": item["quantity"],
            "timestamp": text_ts,
        }
        if unit_price is not None:
            raw["unit_price"] = item["unit_price"]
        return rating.ReadingIn(rid, metric, quantity, ts, unit_price), period, raw

    # --- end of transaction ------------------------------------------------------------------------
    def finish(self) -> list[dict[str, Any]]:
        """Write one batch aggregate per (contract, period), in key order, and describe them."""
        out = []
        for contract_id, period in sorted(self.batches):
            batch = self.batches[(contract_id, period)]
            agg = rating.batch_aggregate(batch.contract.plan, batch.readings)
            running.on_batch(self.tx, batch.contract.record, batch.contract.plan, period, agg)  # ADR 0051
            self.tx.put(keys.usage_batch(contract_id, period, self.tx.tx_id), agg.to_json())
            out.append({"contract_id": contract_id, "period": period, "readings": len(batch.readings)})
        return out + late_readings.write_batches(self.tx, self.late)


def record_usage(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`RecordUsage {"messages": [...]}`: per-message results, one `UsageRecorded` event when anything
    was accepted (a transaction that accepts nothing writes nothing and says so in its results)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ChaincodeError("invalid_argument", "messages must be a non-empty list", field="messages")
    if len(messages) > 1:
        _one_contract(tx, messages)
    recorder = UsageRecorder(tx)
    results = [recorder.record(m) for m in messages]
    batches = recorder.finish()
    if batches:
        tx.event("UsageRecorded", {"batches": batches})
    return {"results": results, "accepted": sum(r["accepted"] for r in results), "tx_id": tx.tx_id}


def _one_contract(tx: Tx, messages: list[Any]) -> None:
    """A transaction of several messages records one contract's usage (ADR 0028): every message names a
    registered device bound to the same contract, else the whole transaction is refused
    (`mixed_contracts`) and the client sends the messages in separate transactions. A transaction's
    envelope carries all its messages, so this is what keeps a contract's proof bundle free of other
    contracts' messages, readings and devices. (One message alone is judged as before.)"""
    devices = [m.get("device_id") if isinstance(m, dict) else None for m in messages]
    named = [d for d in devices if isinstance(d, str) and d]
    records = tx.stub.get_multiple_states([keys.asset(d) for d in dict.fromkeys(named)])
    bound = {}
    for device_id, raw in zip(dict.fromkeys(named), records, strict=True):
        bound[device_id] = load_record(raw).get("contract_id") if raw else None
    contracts = {bound.get(d) if isinstance(d, str) else None for d in devices}
    if len(contracts) != 1 or None in contracts:
        raise ChaincodeError(
            "mixed_contracts",
            "the messages of one RecordUsage transaction must all come from devices of one contract",
            contract_ids=sorted(c for c in contracts if c is not None),
            unbound=sorted({d for d in named if bound.get(d) is None}),
        )
