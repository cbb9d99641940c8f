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
from tests.helpers.embedded import make_signers

PERIOD = "2026-11"
INVOICE_ID = f"inv-{CONTRACT_ID}-{PERIOD}"
TOTAL = "13655.25"
AFTER_NOV = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _j(obj: Any) -> list[str]:
    return [json.dumps(obj)]


@dataclass
class Billed:
    ledger: EmbeddedLedger
    invoice_id: str
    usage_txs: list[str]


def billed_ledger(path: Path) -> Billed:
    clock = Clock(MID_NOV)
    led = EmbeddedLedger(
        path, make_signers(), chaincode_orgs=(PROVIDER, CUSTOMER), clock=clock, synchronous="OFF"
    )
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
