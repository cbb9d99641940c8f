"""Properties of RecordUsage + CloseBillingPeriod over random arrivals: however readings are split into
messages and transactions, reordered and resent, every reading is billed exactly once."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.chaincode import (
    CONTRACT_ID,
    NOV_END,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
NOV = {"contract_id": CONTRACT_ID, "period": "2026-11"}
BASE = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)

_reading = st.tuples(
    st.sampled_from(["scan", "magnet_hours", "peak_kw"]),
    st.decimals(min_value=0, max_value=500, places=2, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=12 * 24 * 60),  # minutes after BASE
)


def _readings(specs: list[tuple[str, object, int]]) -> list[dict]:
    return [
        reading(f"r{i}", metric, str(q), (BASE + dt.timedelta(minutes=m)).isoformat())
        for i, (metric, q, m) in enumerate(specs)
    ]


def _invoice(ledger: ChaincodeLedger) -> dict:
    inv = ledger.submit("CloseBillingPeriod", NOV, at=NOV_END)
    return {k: v for k, v in inv.items() if k not in ("tx_id", "history", "issued_at")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(_reading, min_size=1, max_size=25),
    data=st.data(),
)
def test_any_split_order_and_resend_bills_each_reading_once(specs: list, data: st.DataObject) -> None:
    readings = _readings(specs)
    reference = ChaincodeLedger()
    active_contract(reference, KEY)
    reference.submit("RecordUsage", {"messages": [signed_message(KEY, readings, message_id="all")]})
    expected = _invoice(reference)

    # deliveries: each reading sent at least once, some resent (in other messages), in random order
    order = data.draw(st.permutations(readings))
    resend = data.draw(st.lists(st.sampled_from(readings), max_size=10))
    stream = list(order) + resend
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY)
    accepted = 0
    pos, n_msg = 0, 0
    while pos < len(stream):
        tx_msgs = []
        for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
            if pos >= len(stream):
                break
            size = data.draw(st.integers(min_value=1, max_value=6))
            chunk = list({r["id"]: r for r in stream[pos : pos + size]}.values())  # ids unique in a message
            pos += size
            tx_msgs.append(signed_message(KEY, chunk, message_id=f"m{n_msg}"))
            n_msg += 1
        out = ledger.submit("RecordUsage", {"messages": tx_msgs})
        accepted += out["accepted"]
        for result in out["results"]:
            assert result["status"] == "accepted" or result["error"]["code"] == "duplicate_reading"
    assert accepted == len(readings)
    assert _invoice(ledger) == expected
