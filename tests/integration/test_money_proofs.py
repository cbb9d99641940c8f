"""Proof bundles of prepaid and progressively billed invoices (ADR 0043, 0051) on the embedded ledger.

Their usage and closing transactions write the contract's prepaid balance, running period and draw keys: the
contract's own records, which a bundle may carry (before, the builder refused a prepaid invoice as
disclosing other data). A final invoice that deducts interim invoices is verified against the whole
period's recomputed figures, minus what the interims billed; an interim invoice is proved by its final one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.audit.proof import ProofError, build_bundle
from hub.audit.verify import verify_bundle
from hub.ledger.base import ChaincodeRejected
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.audit import AFTER_NOV, _j
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    sample_asset,
    sample_contract,
)
from tests.helpers.embedded import Clock, contract_ledger

pytestmark = pytest.mark.integration


def _billed(path: Path, **terms: Any) -> Iterator[tuple[EmbeddedLedger, list[str], dict]]:
    clock = Clock(MID_NOV)
    led = contract_ledger(path, clock)
    key = make_device_key("money-proof")
    led.submit("RegisterAsset", _j(sample_asset(key)), as_org=PROVIDER)
    led.submit("ProposeContract", _j(sample_contract(**terms)), as_org=PROVIDER)
    led.submit("AcceptContract", _j({"contract_id": CONTRACT_ID}), as_org=CUSTOMER)
    led.submit("TopUpPrepaid", _j({"contract_id": CONTRACT_ID, "top_up_id": "t1", "amount": "20000.00"}),
               as_org=CUSTOMER)
    interims = []
    for message in example_usage(key, messages=3):
        led.submit("RecordUsage", _j({"messages": [message]}), as_org=PROVIDER)
        if terms:
            try:
                body = {"contract_id": CONTRACT_ID, "period": "2026-11"}
                commit = led.submit("IssueInterimInvoice", _j(body), as_org=PROVIDER)
            except ChaincodeRejected as exc:
                assert exc.code == "interim_not_due"
            else:
                interims.append(json.loads(commit.payload)["id"])
    clock.now = AFTER_NOV
    final = json.loads(led.submit("CloseBillingPeriod", _j({"contract_id": CONTRACT_ID, "period": "2026-11"}),
                                  as_org=PROVIDER).payload)
    try:
        yield led, interims, final
    finally:
        led.close()


def test_a_prepaid_invoice_drawn_per_batch_has_a_verifying_proof(tmp_path: Path) -> None:
    for led, _interims, invoice in _billed(tmp_path / "l"):
        assert invoice["settled_by"] == "prepaid"
        report = verify_bundle(build_bundle(led, invoice["id"], as_org="AuditorMSP"))
        assert report.ok, report


def test_a_final_invoice_after_interims_verifies_and_a_changed_deduction_fails(tmp_path: Path) -> None:
    for led, interims, final in _billed(tmp_path / "l", billing_threshold="3000.00"):
        assert len(interims) >= 2 and final["interim_invoices"] == interims
        bundle = build_bundle(led, final["id"], as_org="AuditorMSP")
        report = verify_bundle(bundle)
        assert report.ok, report
        forged = copy.deepcopy(bundle)
        forged["invoice"]["deducted"]["total"] = "0.00"  # claims nothing was billed before
        assert not verify_bundle(forged).ok
        with pytest.raises(ProofError) as refused:
            build_bundle(led, interims[0], as_org="AuditorMSP")
        assert refused.value.code == "proof_unsupported"
