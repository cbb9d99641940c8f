"""Chaincode micro-benchmark (not a test): RecordUsage and CloseBillingPeriod on the InMemoryStub.

    .venv/bin/python -m tests.perf.bench_contract [--readings 20000] [--per-message 100] [--batches 200]

Prints readings per CPU-second (wall time alongside) for one large RecordUsage transaction (signature
check, validation, duplicate check, writes, batch aggregate; no ledger I/O), the same transaction
replayed (every reading a duplicate), and the time to close a period made of many batches.
Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import time

from chaincode.contract import invoke
from chaincode.stub import InMemoryStub
from tests.helpers.chaincode import (
    CONTRACT_ID,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)


def _messages(key, n: int, per_message: int, tag: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    for m in range(max(1, n // per_message)):
        rs = [
            reading(
                f"{tag}{m}-{i}",
                "scan" if i % 2 else "magnet_hours",
                "0.5",
                f"2026-11-{1 + i % 14:02d}T{8 + i % 10:02d}:{i % 60:02d}:{m % 60:02d}+01:00",
            )
            for i in range(per_message)
        ]
        out.append(signed_message(key, rs, message_id=f"{tag}-{m}"))
    return out


def _timed(ledger: ChaincodeLedger, fn: str, arg: str, at=None) -> tuple[float, dict]:
    """Run one transaction; returns its CPU time (robust on a shared machine) and answer."""  # type: ignore[no-untyped-def]
    ledger.counter += 1
    stub = InMemoryStub(
        ledger.world, tx_id=f"bench-{ledger.counter}", timestamp=at or ledger.now, creator_msp_id=PROVIDER
    )
    t0, c0 = time.perf_counter(), time.process_time()
    out = invoke(stub, fn, [arg])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    stub.commit()
    print(f"  ({fn}: wall {elapsed:.3f} s, CPU {cpu:.3f} s)")
    return cpu, json.loads(out)


def _quiet(ledger: ChaincodeLedger, fn: str, arg: str) -> None:
    stub = InMemoryStub(
        ledger.world, tx_id=f"bench-{ledger.counter}", timestamp=ledger.now, creator_msp_id=PROVIDER
    )
    invoke(stub, fn, [arg])
    stub.commit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    key = make_device_key()
    ledger = ChaincodeLedger()
    active_contract(ledger, key)

    arg = json.dumps({"messages": _messages(key, args.readings, args.per_message, "a")})
    t, out = _timed(ledger, "RecordUsage", arg)
    n = out["accepted"]
    print(f"RecordUsage new:        {n} readings in {t:.2f} CPU-s = {n / t:,.0f} readings/s")
    t, out = _timed(ledger, "RecordUsage", arg)
    n = sum(len(r["error"]["reading_ids"]) for r in out["results"])
    print(f"RecordUsage duplicates: {n} readings in {t:.2f} CPU-s = {n / t:,.0f} readings/s")

    for b in range(args.batches):
        ledger.counter += 1
        _quiet(ledger, "RecordUsage", json.dumps({"messages": _messages(key, 10, 10, f"b{b}-")}))
    body = json.dumps({"contract_id": CONTRACT_ID, "period": "2026-11"})
    t, inv = _timed(ledger, "CloseBillingPeriod", body, at=NOV_END)
    print(f"CloseBillingPeriod:     {args.batches + 1} batches, {inv['readings']} readings", end=" ")
    print(f"in {t * 1000:.0f} CPU-ms")


if __name__ == "__main__":
    main()
