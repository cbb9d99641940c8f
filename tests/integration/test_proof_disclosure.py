"""A contract's proof bundle discloses nothing of another contract (issue 13 item 6, ADR 0028).

Two contracts of one provider, their devices' messages arriving together so the hub batches them: the
proof bundle of contract A (every byte, base64 layers decoded) holds no message id, reading id, device id
or quantity of contract B, and still verifies offline. A ledger written before ADR 0028 (a RecordUsage
transaction of both contracts) gets no bundle (409), and a bundle that carries such a transaction fails
the offline verifier's `disclosure` check.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hub.audit import proof as proof_module
from hub.audit.proof import ProofError, build_bundle
from hub.audit.verify import verify_bundle
from hub.ledger.base import ChaincodeRejected
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.api import (
    ControlledLedger,
    auth,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.embedded import Clock, contract_ledger

pytestmark = pytest.mark.integration

PERIOD, _ = last_month()
B_CONTRACT, B_DEVICE = "ctr-press-b", "press-b-07"
B_QUANTITY = "7.654321"  # no reading of contract A has this quantity
KEY_A, KEY_B = make_device_key("disclose-a"), make_device_key("disclose-b")


def _expand(data: bytes, depth: int = 0) -> str:
    """`data` as text plus, recursively, every base64 run inside it decoded (envelopes, args, writes)."""
    text = data.decode("utf-8", "replace")
    if depth >= 5:
        return text
    parts = [text]
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            inner = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        parts.append(_expand(inner, depth + 1))
    return "\n".join(parts)


def _b_markers(messages_b: list[dict[str, Any]]) -> set[str]:
    markers = {B_CONTRACT, B_DEVICE, B_QUANTITY}
    for m in messages_b:
        markers.add(m["message_id"])
        markers.update(r["id"] for r in m["readings"])
    return markers


def _wait_until(predicate: Any, what: str) -> None:
    event = threading.Event()
    for _ in range(6000):
        if predicate():
            return
        event.wait(0.005)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ControlledLedger]:
    inner = contract_ledger(tmp_path / "ledger")
    controlled = ControlledLedger(inner)
    yield controlled
    controlled.close()


def test_bundle_of_contract_a_holds_nothing_of_contract_b(tmp_path: Path, ledger: ControlledLedger) -> None:
    with hub_client(hub_settings(tmp_path), ledger, background=False) as client:
        setup_contract(client, KEY_A)
        setup_contract(client, KEY_B, id=B_CONTRACT, assets=[B_DEVICE])
        first = usage(KEY_A, "a-0", [reading("ra-0", "scan", "1", ts(PERIOD, 2))])
        messages_a = [usage(KEY_A, f"a-{i}", [reading(f"ra-{i}", "scan", "1", ts(PERIOD, 3))])
                      for i in range(1, 5)]
        # long, distinctive ids, so the scan cannot meet them by chance in decoded binary
        messages_b = [usage(KEY_B, f"b-msg-{i:04d}", [reading(f"rb-press-{i:04d}", "scan", B_QUANTITY,
                                                             ts(PERIOD, 3))], device_id=B_DEVICE)
                      for i in range(4)]
        # hold the first transaction so that A's and B's messages queue up and share the next batch
        ingest = client.app.state.services.ingestor
        ledger.entered.clear()
        ledger.gate = threading.Event()
        with ThreadPoolExecutor(max_workers=9) as pool:
            head = pool.submit(post_usage, client, first)
            _wait_until(ledger.entered.is_set, "first submit reached the ledger")
            rest = [pool.submit(post_usage, client, m) for pair in zip(messages_a, messages_b, strict=True)
                    for m in pair]
            _wait_until(lambda: ingest._queue.qsize() == 8, "8 messages queued")
            ledger.gate.set()
            answers = [head.result(), *(f.result() for f in rest)]
        assert [a.status_code for a in answers] == [202] * 9, [a.text for a in answers]

        closed = client.post(f"/v1/contracts/{CONTRACT_ID}/periods/{PERIOD}/close",
                             headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice_id = closed.json()["id"]
        assert closed.json()["readings"] == 5
        got = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-customer"))
        assert got.status_code == 200, got.text
        bundle = got.json()

    everything = _expand(json.dumps(bundle).encode())
    assert "ra-1" in everything and "mri-berlin-01" in everything  # the scan does reach inside envelopes
    leaked = sorted(m for m in _b_markers(messages_b) if m in everything)
    assert leaked == [], f"contract A's bundle discloses contract B's {leaked}"
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    # the batch throughput stays: the 8 queued messages went out as one transaction per contract
    assert sorted(ledger.usage_batches) == [1, 4, 4]
    tx_a, tx_b = {a.json()["tx_id"] for a in answers[1::2]}, {a.json()["tx_id"] for a in answers[2::2]}
    assert len(tx_a) == 1 and len(tx_b) == 1 and tx_a != tx_b


def _mixed_legacy_ledger(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedLedger, str]:
    """November 2026 of the sample contract (A) and a second contract (B) of the same provider, with one
    RecordUsage transaction that holds both contracts' messages, as ledgers written before ADR 0028 may."""
    from tests.helpers.audit import AFTER_NOV

    clock = Clock(MID_NOV)
    led = contract_ledger(path, clock)
    j = lambda obj: [json.dumps(obj)]  # noqa: E731
    for key, asset_id in ((KEY_A, "mri-berlin-01"), (KEY_B, B_DEVICE)):
        led.submit("RegisterAsset", j(sample_asset(key, asset_id)), as_org=PROVIDER)
    for contract in (sample_contract(), sample_contract(id=B_CONTRACT, assets=[B_DEVICE])):
        led.submit("ProposeContract", j(contract), as_org=PROVIDER)
        led.submit("AcceptContract", j({"contract_id": contract["id"]}), as_org=CUSTOMER)
    b_message = signed_message(KEY_B, [reading("rb-1", "scan", B_QUANTITY)], device_id=B_DEVICE,
                               message_id="b-1")
    mixed = {"messages": [*example_usage(KEY_A), b_message]}
    with pytest.raises(ChaincodeRejected) as refused:  # today's contract refuses such a transaction
        led.submit("RecordUsage", j(mixed), as_org=PROVIDER)
    assert refused.value.code == "mixed_contracts"
    with monkeypatch.context() as patch:  # the contract as it was before ADR 0028
        patch.setattr("chaincode.tx.usage._one_contract", lambda tx, messages: None)
        led.submit("RecordUsage", j(mixed), as_org=PROVIDER)
    clock.now = AFTER_NOV
    close = {"contract_id": CONTRACT_ID, "period": "2026-11"}
    invoice = json.loads(led.submit("CloseBillingPeriod", j(close), as_org=PROVIDER).payload)
    return led, invoice["id"]


def test_a_mixed_legacy_transaction_is_refused_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led, invoice_id = _mixed_legacy_ledger(tmp_path / "ledger", monkeypatch)
    try:
        with pytest.raises(ProofError) as err:
            build_bundle(led, invoice_id, as_org=CUSTOMER)
        assert err.value.code == "proof_discloses_other_contracts"
        assert B_DEVICE in err.value.message
        # a bundle built without that refusal is reported by the offline verifier, naming the transaction
        monkeypatch.setattr(proof_module, "_refuse_foreign", lambda *a: None)
        bundle = build_bundle(led, invoice_id, as_org=CUSTOMER)
        report = verify_bundle(bundle)
        hits = [f for f in report.failures if f.check == "disclosure"]
        assert hits and all(f.part.startswith("tx ") for f in hits), report.summary()
        assert any(B_DEVICE in f.detail for f in hits) and any(B_CONTRACT in f.detail for f in hits)
        assert {f.check for f in report.failures} == {"disclosure"}  # everything else still proves
    finally:
        led.close()


def test_the_api_answers_409_for_a_legacy_mixed_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led, invoice_id = _mixed_legacy_ledger(tmp_path / "ledger", monkeypatch)
    with hub_client(hub_settings(tmp_path), led, background=False) as client:
        got = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-auditor"))
    led.close()
    assert got.status_code == 409, got.text
    assert got.json()["code"] == "proof_discloses_other_contracts"
    assert got.headers["content-type"].startswith("application/problem+json")
