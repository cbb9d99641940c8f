"""Closing a period cut by an amendment vs the same period without one (ADR 0046), on the in-memory stub.

A cut period is rated from its readings (O(readings)); an uncut one from its batch aggregates
(O(batches)). Prints the median CloseBillingPeriod time of each for N readings in batches of 500, and their
ratio, from the same run:  .venv/bin/python scripts/measure_amended_close.py [N]
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)
from tests.unit.test_contract_amendments import EFFECTIVE, PLAN_V1, PLAN_V2

U = dt.UTC


def ledger_with(n: int, amended: bool) -> ChaincodeLedger:
    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 10, 1, 8, tzinfo=U)), make_device_key("measure")
    active_contract(ledger, key, **PLAN_V1)
    if amended:
        ledger.now = dt.datetime(2026, 10, 20, tzinfo=U)
        ledger.submit("ProposeAmendment", {"contract_id": CONTRACT_ID, "id": "am",
                                           "effective_from": EFFECTIVE, "plan": PLAN_V2})
        ledger.submit("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am"}, org=CUSTOMER)
    ledger.now = dt.datetime(2026, 10, 31, 22, tzinfo=U)
    start = dt.datetime(2026, 9, 30, 22, tzinfo=U)
    step = (dt.datetime(2026, 10, 31, 22, tzinfo=U) - start) / n
    for b in range(0, n, 500):
        rs = [reading(f"r{i}", "scan", "1", (start + step * i).isoformat())
              for i in range(b, min(n, b + 500))]
        ledger.submit("RecordUsage", {"messages": [signed_message(key, rs, message_id=f"m{b}")]})
    ledger.now = dt.datetime(2026, 11, 1, 12, tzinfo=U)
    return ledger


def close_seconds(ledger: ChaincodeLedger) -> float:
    started = time.perf_counter()
    ledger.evaluate("PreviewInvoice", {"contract_id": CONTRACT_ID, "period": "2026-10"})
    return time.perf_counter() - started


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    plain, cut = ledger_with(n, False), ledger_with(n, True)
    a = statistics.median(close_seconds(plain) for _ in range(5))
    b = statistics.median(close_seconds(cut) for _ in range(5))
    print(f"{n} readings in {-(-n // 500)} batches: close (as PreviewInvoice, median of 5) "
          f"uncut {a * 1000:.1f} ms, cut by an amendment {b * 1000:.1f} ms, ratio {b / a:.1f}x")


if __name__ == "__main__":
    main()
