"""Late readings in a proof bundle (ADR 0048): what `hub.audit.evidence` needs to check them.

A late reading sits under the key of the period it belongs to and says `"billed_in": B`; the invoice of B
bills it in lines marked `late_of`. So the bundle of B carries B's own readings plus the late readings
billed in B, and the bundle of an earlier period leaves its late readings out (they are not in its
invoice). The closing transaction of B read the range `lateusage~{contract}~{B}`: that range names every
transaction that recorded late usage billed in B, as the usage batches name the period's own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chaincode import keys, late, rating
from chaincode.stub import partial_key_range, split_composite_key


def is_late(rec: Mapping[str, Any], period: str) -> bool:
    """A reading billed in `period` that belongs to an earlier one."""
    return rec.get("billed_in") == period and rec.get("period") != period


def own_period(rec: Mapping[str, Any], period: str) -> str:
    """The period whose key a reading of the bundle of `period` sits under."""
    return str(rec.get("period")) if is_late(rec, period) else period


def late_batches(close: Any, contract_id: str, period: str) -> dict[str, Any]:
    """tx id -> version of every late-usage batch the closing transaction read (billed in `period`)."""
    start, _end = partial_key_range(late.LATE_USAGE, [contract_id, period])
    out: dict[str, Any] = {}
    for scan in close.ranges:
        if scan.start == start:
            for key, version in scan.results:
                out[split_composite_key(key)[1][-1]] = version
    return out


def late_keys(tx: Any, contract_id: str, period: str) -> list[str]:
    """The reading keys `tx` wrote for readings billed in `period` (of earlier periods)."""
    prefix = keys.readings_prefix(contract_id, "")[: -len("\x00")]
    found = []
    for key, value in tx.writes.items():
        if not key.startswith(prefix) or value is None:
            continue
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("contract_id") == contract_id and is_late(record, period):
            found.append(key)
    return found


def expected(
    contract: Mapping[str, Any], plan: rating.Plan, rated: dict[str, Any],
    late_readings: list[rating.ReadingIn],
) -> dict[str, Any]:
    """The recomputed invoice money part with the late lines the chaincode adds (same code): an amended
    contract's late usage under the plan version(s) in force in its period, from the bundle's readings."""
    by_period: dict[str, list[rating.ReadingIn]] = {}
    for r in late_readings:
        by_period.setdefault(rating.period_of(r.timestamp, plan.timezone), []).append(r)
    return late.with_late_lines(
        plan, rated, late.aggregates_by_period(plan, late_readings), contract,
        lambda p: by_period.get(p, []),
    )


def line_key(line: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """Lines are told apart by charge, for late usage by the period it belongs to, and for an amended
    contract by the plan version it was rated under (a period cut by an amendment has a line per
    version and charge)."""
    return line.get("charge_id"), line.get("late_of"), line.get("plan_version")


def label(key: tuple[Any, Any, Any]) -> str:
    charge, late_of, version = key
    text = str(charge) if late_of is None else f"{charge} (late usage {late_of})"
    return text if version is None else f"{text} (plan version {version})"
