"""Builders for audit tests: a real embedded ledger running the real contract up to an issued invoice.

`billed_ledger(dir)` registers the sample asset, proposes and accepts the sample contract, records the
API.md example usage (170 readings) in three RecordUsage transactions (a resend with a duplicate reading
among them; an unrelated transaction in its own block between them), closes November 2026 (total
13655.25), commits one more unrelated block, and returns the open ledger and the invoice id.
The proposal clock is injected, so nothing depends on the wall clock.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.audit.proof import build_bundle
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.embedded import Clock, contract_ledger

PERIOD = "2026-11"
INVOICE_ID = f"inv-{CONTRACT_ID}-{PERIOD}"
TOTAL = "13655.25"
AFTER_NOV = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def _j(obj: Any) -> list[str]:
    return [json.dumps(obj)]


@dataclass
class Billed:
    ledger: EmbeddedLedger
    invoice_id: str
    usage_txs: list[str]


def billed_ledger(path: Path) -> Billed:
    clock = Clock(MID_NOV)
    led = contract_ledger(path, clock)
    key = make_device_key("audit")
    led.submit("RegisterAsset", _j(sample_asset(key)), as_org=PROVIDER)
    led.submit("ProposeContract", _j(sample_contract()), as_org=PROVIDER)
    led.submit("AcceptContract", _j({"contract_id": CONTRACT_ID}), as_org=CUSTOMER)
    messages = example_usage(key, messages=3)
    usage_txs = [led.submit("RecordUsage", _j({"messages": messages[:2]}), as_org=PROVIDER).tx_id]
    # an unrelated block in the middle: the proof links through it with its header alone
    led.submit("RegisterAsset", _j(sample_asset(make_device_key("other"), "ct-hamburg-02")), as_org=PROVIDER)
    # a device that lost an answer resends one reading under a new message id, with one new reading
    first = messages[2]["readings"][0]
    resend = signed_message(key, [messages[0]["readings"][0], first], message_id="resend-1")
    usage_txs.append(led.submit("RecordUsage", _j({"messages": [resend]}), as_org=CUSTOMER).tx_id)
    rest = signed_message(key, messages[2]["readings"][1:], message_id="r-msg-2")
    usage_txs.append(led.submit("RecordUsage", _j({"messages": [rest]}), as_org=PROVIDER).tx_id)
    # something unrelated after the close, so the proof's chain has blocks it does not need
    clock.now = AFTER_NOV
    closed = led.submit(
        "CloseBillingPeriod", _j({"contract_id": CONTRACT_ID, "period": PERIOD}), as_org=PROVIDER
    )
    invoice = json.loads(closed.payload)
    led.submit("RegisterAsset", _j(sample_asset(make_device_key("third"), "us-munich-03")), as_org=PROVIDER)
    return Billed(led, invoice["id"], usage_txs)


def proof_of(billed: Billed, as_org: str = "AuditorMSP") -> dict[str, Any]:
    return build_bundle(billed.ledger, billed.invoice_id, as_org=as_org)


def fresh(bundle: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(bundle)


# --- every charge model, two devices ------------------------------------------------------------------

MODELS_METRICS = {
    "energy": {"aggregation": "sum", "unit": "kWh"},
    "spot": {"aggregation": "sum", "unit": "kWh"},
    "peak_kw": {"aggregation": "max", "unit": "kW"},
    "jobs": {"aggregation": "count", "unit": "job"},
}
MODELS_CHARGES = [
    {"id": "tou", "model": "time_of_use", "metric": "energy", "default_unit_price": "0.10",
     "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00",
                  "unit_price": "0.30"}]},
    {"id": "market", "model": "dynamic", "metric": "spot"},
    {"id": "peak", "model": "per_unit", "metric": "peak_kw", "unit_price": "4.00"},
    {"id": "jobs", "model": "volume", "metric": "jobs",
     "tiers": [{"up_to": "2", "unit_price": "10"}, {"up_to": None, "unit_price": "8"}]},
]  # fmt: skip
MODELS_TOTAL = "227.17"  # tou 3.60 + market 1.30 + peak 162.00 + jobs 24.00 = 190.90, tax 19 % 36.27


def billed_models_ledger(path: Path) -> Billed:
    """Time-of-use, dynamic (readings with unit_price), max and count metrics from two devices."""
    from tests.helpers.chaincode import reading

    clock = Clock(MID_NOV)
    led = contract_ledger(path, clock)
    meter, press = make_device_key("meter"), make_device_key("press")
    led.submit("RegisterAsset", _j(sample_asset(meter, "meter-1", "energy meter")), as_org=PROVIDER)
    led.submit("RegisterAsset", _j(sample_asset(press, "press-2", "press")), as_org=PROVIDER)
    contract = sample_contract(assets=["meter-1", "press-2"], metrics=MODELS_METRICS, charges=MODELS_CHARGES,
                               minimum_commitment=None)
    led.submit("ProposeContract", _j(contract), as_org=PROVIDER)
    led.submit("AcceptContract", _j({"contract_id": CONTRACT_ID}), as_org=CUSTOMER)
    # 2026-11-02 is a Monday: 09:00 Berlin is in the peak window, 20:00 is not; 2026-11-07 is a Saturday
    energy = signed_message(meter, [
        reading("e1", "energy", "10", "2026-11-02T09:00:00+01:00"),
        reading("e2", "energy", "5", "2026-11-02T20:00:00+01:00"),
        reading("e3", "energy", "1", "2026-11-07T09:00:00+01:00"),
        reading("s1", "spot", "3", "2026-11-02T09:00:00+01:00", unit_price="0.2"),
        reading("s2", "spot", "2", "2026-11-03T09:00:00+01:00", unit_price="0.35"),
    ], device_id="meter-1", message_id="a")  # fmt: skip
    jobs = signed_message(press, [
        reading("p1", "peak_kw", "40.5", "2026-11-02T09:00:00+01:00"),
        reading("p2", "peak_kw", "38", "2026-11-03T09:00:00+01:00"),
        reading("j1", "jobs", "1", "2026-11-03T09:00:00+01:00"),
        reading("j2", "jobs", "1", "2026-11-04T09:00:00+01:00"),
        reading("j3", "jobs", "7", "2026-11-05T09:00:00+01:00"),
    ], device_id="press-2", message_id="b")  # fmt: skip
    usage_txs = [
        led.submit("RecordUsage", _j({"messages": [energy]}), as_org=PROVIDER).tx_id,
        led.submit("RecordUsage", _j({"messages": [jobs]}), as_org=CUSTOMER).tx_id,
    ]
    clock.now = AFTER_NOV
    closed = led.submit("CloseBillingPeriod", _j({"contract_id": CONTRACT_ID, "period": PERIOD}),
                        as_org=CUSTOMER)
    return Billed(led, json.loads(closed.payload)["id"], usage_txs)
