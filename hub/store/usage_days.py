"""Daily usage aggregates (ADR 0044): the read model the portal's charts are served from.

A consumer of the ledger's event stream, like the projector, with its own checkpoint (`usage-days`), so a
database that never had these rows rebuilds them from block 0. For each `UsageRecorded` event it reads the
transaction back through the `Ledger` interface (`tx(tx_id)`: its arguments are the signed messages, its
response says which readings of each message were accepted and which were duplicates), groups the accepted
readings by the contract's local day and device, aggregates each group with the chaincode's own rating
code (`rating.batch_aggregate`) and merges it into that day's row (`rating.merge`). The transaction id is
written in the same database transaction as the rows, so replaying the stream — after a crash, or from a
second hub process — never counts a reading twice.

Reading a chart is then O(days x devices) rows instead of O(readings), on either ledger.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chaincode import rating
from chaincode.money import parse_quantity, parse_unit_price
from chaincode.periods import parse_timestamp, zone
from chaincode.plan import Plan, parse_plan
from hub.ledger.base import ChaincodeEvent
from hub.store.checkpoints import read_checkpoint, save_checkpoint
from hub.store.models import UsageDay, UsageDayTx
from hub.store.projector import HubReader

log = logging.getLogger("ledgerhub.usage_days")
CONSUMER = "usage-days"
EVENT = "UsageRecorded"


def accepted_readings(args: list[bytes], response: bytes) -> list[dict[str, Any]]:
    """The readings a `RecordUsage` transaction recorded: every reading of each accepted message except
    the ones the chaincode answered were duplicates, each with its message's `device_id`."""
    body = json.loads(args[0]) if args else {}
    results = json.loads(response).get("results", []) if response else []
    out: list[dict[str, Any]] = []
    for message, result in zip(body.get("messages") or [], results, strict=False):
        if not isinstance(message, dict) or result.get("status") != "accepted" or not result.get("accepted"):
            continue
        duplicates = set(result.get("duplicates") or [])
        device_id = message.get("device_id", "")
        for reading in message.get("readings") or []:
            if reading.get("id") not in duplicates:
                out.append({**reading, "device_id": device_id})
    return out


def day_aggregates(plan: Plan, readings: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str],
                                                                          rating.BatchAggregate]:
    """{(period, local day, device): aggregate} of readings of one contract."""
    tz = zone(plan.timezone)
    groups: dict[tuple[str, str, str], list[rating.ReadingIn]] = defaultdict(list)
    for record in readings:
        # parsed as the chaincode parses them, without the per-reading digest (the invoice's business,
        # not a chart's): a third of the cost of folding a reading in
        price = record.get("unit_price")
        reading = rating.ReadingIn(
            id=str(record["id"]), metric=str(record["metric"]), quantity=parse_quantity(record["quantity"]),
            timestamp=parse_timestamp(record["timestamp"]),
            unit_price=None if price is None else parse_unit_price(price), device_id=str(record["device_id"]),
        )
        local = reading.timestamp.astimezone(tz)  # a period is a calendar month in the contract's zone
        groups[(f"{local.year:04d}-{local.month:02d}", local.date().isoformat(), reading.device_id)].append(
            reading)
    return {key: rating.batch_aggregate(plan, rs) for key, rs in groups.items()}


class UsageDays:
    """Keeps `usage_day` in step with the ledger; `catch_up` is safe to call from any thread or process."""

    def __init__(self, gateway: HubReader, db: sessionmaker[Session]) -> None:
        self.gateway = gateway
        self.db = db
        self._plans: dict[str, Plan] = {}
        self._lock = threading.Lock()
        self._height = 0  # the ledger height at the start of the last complete catch-up

    def plan(self, contract_id: str) -> Plan:
        plan = self._plans.get(contract_id)
        if plan is None:  # a contract's plan never changes once proposed
            contract = self.gateway.client.get_contract(contract_id, as_org=None)
            plan = self._plans[contract_id] = parse_plan(contract.raw)
        return plan

    def _contract_of(self, readings: list[dict[str, Any]], batches: list[dict[str, Any]]) -> dict[str, str]:
        """device -> contract. One contract per usage transaction (ADR 0028), so the event names it; the
        asset records decide only if a transaction ever spans several."""
        contracts = {b["contract_id"] for b in batches}
        devices = {r["device_id"] for r in readings}
        if len(contracts) == 1:
            only = next(iter(contracts))
            return dict.fromkeys(devices, only)
        return {d: self.gateway.client.get_asset(d, as_org=None).raw.get("contract_id", "") for d in devices}

    def apply(self, event: ChaincodeEvent) -> int:
        """Fold one `UsageRecorded` transaction in; returns the readings added (0 if already folded)."""
        if event.name != EVENT:
            return 0
        with self.db() as session:
            if session.get(UsageDayTx, event.tx_id) is not None:
                return 0
        payload = json.loads(event.payload) if event.payload else {}
        batches = payload.get("batches") or []
        record = self.gateway.ledger.tx(event.tx_id)
        readings = accepted_readings(list(record.args), record.response)
        contract_of = self._contract_of(readings, batches)
        by_contract: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in readings:
            by_contract[contract_of[r["device_id"]]].append(r)
        expected = sum(int(b.get("readings", 0)) for b in batches)
        if expected != len(readings):  # the event and the transaction disagree: say so, keep what we read
            log.warning("usage days: tx %s recorded %d readings, event says %d", event.tx_id, len(readings),
                        expected)
        try:
            with self.db.begin() as session:
                session.add(UsageDayTx(tx_id=event.tx_id, block=event.block, readings=len(readings)))
                session.flush()  # a second writer of the same tx fails here, before touching any row
                for contract_id, rs in by_contract.items():
                    for (period, day, device), fresh in day_aggregates(self.plan(contract_id), rs).items():
                        row = session.get(UsageDay, (contract_id, period, day, device))
                        if row is not None:
                            before = rating.BatchAggregate.from_json(json.loads(row.aggregate))
                            merged = rating.merge([before, fresh])
                            row.aggregate, row.block = json.dumps(merged.to_json()), event.block
                        else:
                            session.add(UsageDay(contract_id=contract_id, period=period, day=day,
                                                 device_id=device, aggregate=json.dumps(fresh.to_json()),
                                                 block=event.block))
        except IntegrityError:
            return 0  # another process folded this transaction first
        return len(readings)

    def checkpoint(self) -> tuple[int, set[str]]:
        with self.db() as session:
            return read_checkpoint(session, CONSUMER)

    def _save(self, block: int, tx_ids: set[str]) -> None:
        with self.db.begin() as session:
            save_checkpoint(session, CONSUMER, block, tx_ids)

    def catch_up(self, timeout: float = 0.0) -> int:
        """Fold every usage transaction after the checkpoint; returns how many readings were added."""
        with self._lock:
            height = self.gateway.ledger.height()
            block, seen = self.checkpoint()
            added = 0
            for event in self.gateway.ledger.events(block, timeout=timeout):
                if event.block == block and event.tx_id in seen:
                    continue
                added += self.apply(event)
                if event.block != block:
                    block, seen = event.block, set()
                seen.add(event.tx_id)
                self._save(block, seen)
            self._height = max(self._height, height)
            return added

    def fresh(self, wait: float = 0.5) -> None:
        """Read-your-writes for a request: catch up only if the ledger grew since the last catch-up (one
        cheap height call otherwise). The embedded ledger hands over what it has at once; a Fabric event
        stream needs a moment to start, so when the first pass leaves the model behind the chain's last
        block, a second pass waits up to `wait` for the stream. The background follower (the projector's
        loop) picks up anything later."""
        height = self.gateway.ledger.height()
        if height <= self._height:
            return
        self.catch_up(timeout=0.0)
        if self.checkpoint()[0] < height - 1:
            self.catch_up(timeout=wait)

    # --- reading ------------------------------------------------------------------------------

    def rows(self, contract_id: str, period: str, since: int | None = None) -> list[UsageDay]:
        query = select(UsageDay).where(UsageDay.contract_id == contract_id, UsageDay.period == period)
        if since is not None:
            query = query.where(UsageDay.block > since)
        with self.db() as session:
            return list(session.scalars(query.order_by(UsageDay.day, UsageDay.device_id)))
