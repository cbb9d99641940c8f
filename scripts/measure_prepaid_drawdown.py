"""What the per-batch prepaid drawdown and the running period (ADR 0051) cost a RecordUsage transaction: the
chaincode alone (in-memory stub), N transactions of one message of R readings each, for a plain contract, a
prepaid one and a progressively billed one, alternated in rounds so machine noise hits all three alike. CPU
seconds (process time) per transaction and the ratios to the plain contract, from the same run.

    PYTHONPATH=. .venv/bin/python scripts/measure_prepaid_drawdown.py 200 50
"""

import sys
import time

from tests.helpers.chaincode import (
    CONTRACT_ID,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

N, R = int(sys.argv[1]), int(sys.argv[2])
ROUNDS = 5
KEY = make_device_key("measure")
MESSAGES = [
    signed_message(KEY, [reading(f"m{n}-{i}", "scan", "1", f"2026-11-{1 + n % 14:02d}T09:{i % 60:02d}:00Z")
                         for i in range(R)], message_id=f"m-{n}")
    for n in range(N)
]
KINDS = {"plain": {}, "prepaid": {"prepaid": {"low_balance": "10.00"}},
         "progressive": {"billing_threshold": "1000000000.00"}}


def run(terms: dict, messages: list) -> float:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, **terms)
    if "prepaid" in terms:
        body = {"contract_id": CONTRACT_ID, "top_up_id": "t", "amount": "999999999.00"}
        ledger.submit("TopUpPrepaid", body)
    started = time.process_time()
    for message in messages:
        assert ledger.submit("RecordUsage", {"messages": [message]})["accepted"] == R
    seconds = time.process_time() - started
    if "prepaid" in terms:  # the balance moved with every batch
        assert len(ledger.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})["draws"]) == len(messages)
    return seconds


totals = dict.fromkeys(KINDS, 0.0)
per_round = N // ROUNDS
for r in range(ROUNDS):
    chunk = MESSAGES[r * per_round:(r + 1) * per_round]
    for kind, terms in KINDS.items():
        totals[kind] += run(terms, chunk)
count = per_round * ROUNDS
for kind, seconds in totals.items():
    print(f"{kind:12s} {count} tx x {R} readings: {seconds:.3f} CPU-s, {seconds / count * 1000:.2f} ms/tx, "
          f"{seconds / totals['plain']:.2f}x plain")
