"""Plans beyond the API.md example, end to end through RecordUsage and CloseBillingPeriod: time-of-use,
dynamic, max and count aggregations, caps, JPY rounding; and robustness of stored plans and contexts."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from chaincode import keys
from chaincode.stub import _Committed
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

METRICS = {
    "energy": {"aggregation": "sum", "unit": "kWh"},
    "spot": {"aggregation": "sum", "unit": "kWh"},
    "peak_kw": {"aggregation": "max", "unit": "kW"},
    "jobs": {"aggregation": "count", "unit": "job"},
}
CHARGES = [
    {
        "id": "tou",
        "model": "time_of_use",
        "metric": "energy",
        "default_unit_price": "0.10",
        "windows": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from": "08:00",
                "to": "18:00",
                "unit_price": "0.30",
            }
        ],
    },
    {"id": "market", "model": "dynamic", "metric": "spot"},
    {"id": "peak", "model": "per_unit", "metric": "peak_kw", "unit_price": "4.00"},
    {
        "id": "jobs",
        "model": "volume",
        "metric": "jobs",
        "tiers": [{"up_to": "2", "unit_price": "10"}, {"up_to": None, "unit_price": "8"}],
    },
]


def _ledger(**overrides: object) -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, metrics=METRICS, charges=CHARGES, minimum_commitment=None, **overrides)
    return ledger


def _usage() -> list[dict]:
    # 2026-11-02 is a Monday: 09:00 Berlin is in the peak window, 20:00 is not; 2026-11-07 is a Saturday
    return [
        signed_message(
            KEY,
            [
                reading("e1", "energy", "10", "2026-11-02T09:00:00+01:00"),
                reading("e2", "energy", "5", "2026-11-02T20:00:00+01:00"),
                reading("e3", "energy", "1", "2026-11-07T09:00:00+01:00"),
                reading("s1", "spot", "3", "2026-11-02T09:00:00+01:00", unit_price="0.2"),
                reading("s2", "spot", "2", "2026-11-03T09:00:00+01:00", unit_price="0.35"),
            ],
            message_id="a",
        ),
        signed_message(
            KEY,
            [
                reading("p1", "peak_kw", "40.5", "2026-11-02T09:00:00+01:00"),
                reading("p2", "peak_kw", "38", "2026-11-03T09:00:00+01:00"),
                reading("j1", "jobs", "1", "2026-11-03T09:00:00+01:00"),
                reading("j2", "jobs", "1", "2026-11-04T09:00:00+01:00"),
                reading("j3", "jobs", "7", "2026-11-05T09:00:00+01:00"),
            ],
            message_id="b",
        ),
    ]


def test_every_model_through_the_ledger() -> None:
    ledger = _ledger()
    msgs = _usage()
    ledger.submit("RecordUsage", {"messages": msgs[:1]})
    ledger.submit("RecordUsage", {"messages": msgs[1:]})  # two batches, merged at close
    invoice = ledger.submit("CloseBillingPeriod", NOV, at=NOV_END)
    amounts = {line["charge_id"]: (line["quantity"], line["amount"]) for line in invoice["lines"]}
    assert amounts == {
        "tou": ("16", "3.60"),  # 10 x 0.30 + (5 + 1) x 0.10
        "market": ("5", "1.30"),  # 3 x 0.2 + 2 x 0.35
        "peak": ("40.5", "162.00"),  # max 40.5 x 4.00
        "jobs": ("3", "24.00"),  # count 3 reaches the second tier: 3 x 8
    }
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("190.90", "36.27", "227.17")
    assert invoice["readings"] == 10


def test_maximum_caps_usage_lines() -> None:
    ledger = _ledger(maximum="100.00")
    ledger.submit("RecordUsage", {"messages": _usage()})
    invoice = ledger.submit("CloseBillingPeriod", NOV, at=NOV_END)
    assert invoice["lines"][-1] == {
        "charge_id": "maximum_cap",
        "model": "maximum",
        "quantity": "1",
        "amount": "-90.90",
    }
    assert invoice["subtotal"] == "100.00"


def test_zero_decimal_currency() -> None:
    ledger = _ledger(currency="JPY", tax={"rate": "0.10", "category": "S"})
    ledger.submit("RecordUsage", {"messages": _usage()})
    invoice = ledger.submit("CloseBillingPeriod", NOV, at=NOV_END)
    assert invoice["paid"] == "0"
    assert all("." not in line["amount"] for line in invoice["lines"])
    ledger.submit(
        "RecordErpPosting",
        {
            "invoice_id": invoice["id"],
            "target": "provider",
            "system": "s",
            "document_id": "d",
            "delivery_id": "x",
        },
    )
    ledger.refuse(
        "RecordPayment", {"invoice_id": invoice["id"], "payment_id": "p", "amount": "1.5"}, "invalid_argument"
    )


def test_stored_plan_that_no_longer_parses_is_a_refusal_not_a_crash() -> None:
    ledger = _ledger()
    key = keys.contract(CONTRACT_ID)
    broken = ledger.state(key)
    broken["currency"] = "XXX"
    ledger.world.state[key] = _Committed(json.dumps(broken).encode(), ledger.endorsement(key))
    out = ledger.submit("RecordUsage", {"messages": _usage()[:1]})
    assert out["results"][0]["error"]["code"] == "invalid_plan"
    ledger.refuse("CloseBillingPeriod", NOV, "invalid_plan", at=NOV_END)


def test_results_do_not_depend_on_the_thread_decimal_context() -> None:
    def story() -> tuple[dict, dict]:
        ledger = _ledger()
        ledger.submit("RecordUsage", {"messages": msgs})
        inv = ledger.submit("CloseBillingPeriod", NOV, at=NOV_END)
        ledger.now = NOV_END + dt.timedelta(days=1)
        ledger.submit(
            "RecordErpPosting",
            {
                "invoice_id": inv["id"],
                "target": "provider",
                "system": "s",
                "document_id": "d",
                "delivery_id": "x",
            },
        )
        paid = ledger.submit("RecordPayment", {"invoice_id": inv["id"], "payment_id": "p", "amount": "0.01"})
        ledger.submit("Dispute", {"invoice_id": inv["id"], "reason": "r"}, org="CustomerMSP")
        note = ledger.submit("IssueCreditNote", {"invoice_id": inv["id"], "reason": "r", "amount": "100.01"})
        return {k: v for k, v in paid.items() if k not in ("history", "tx_id", "payments")}, note

    msgs = _usage()
    normal = story()
    with decimal.localcontext(decimal.Context(prec=3, rounding=decimal.ROUND_DOWN)):
        odd = story()
    strip = ("tx_id", "history", "issued_at")
    assert normal[0] == odd[0]
    assert {k: v for k, v in normal[1].items() if k not in strip} == {
        k: v for k, v in odd[1].items() if k not in strip
    }
    assert normal[1]["subtotal"] == "84.04" and normal[1]["tax"] == "15.97"  # 100.01 / 1.19 = 84.0420...
