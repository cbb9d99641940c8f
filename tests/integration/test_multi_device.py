"""Two devices on one contract, each numbering its readings from r-000001, through the hub's HTTP API
(issue 13, item 1: a reading's identity is (device, reading id)).

The checks are plain functions of an API client (and, for the one-batch check, a `ControlledLedger`), so
they can run against any ledger behind the hub; the tests at the bottom run them on the embedded ledger.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chaincode import keys
from chaincode.contract import FUNCTIONS
from chaincode.tx import contracts
from chaincode.tx.common import Tx
from hub.audit.exports import readings_csv
from hub.audit.verify import verify_bundle
from hub.cli import app as cli_app
from tests.helpers.api import ControlledLedger, auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import DeviceKey, make_device_key, reading, sample_asset, sample_contract

pytestmark = pytest.mark.integration

# 10.00 per scan and nothing else (no platform fee, no minimum, no tax): the total shows every reading
PLAN = {
    "charges": [{"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "10.00"}],
    "minimum_commitment": None,
    "tax": None,
}


@dataclass(frozen=True)
class TwoDevices:
    contract_id: str
    period: str
    devices: tuple[tuple[str, DeviceKey], tuple[str, DeviceKey]]

    def message(self, n: int, message_id: str, *readings: dict[str, Any]) -> dict[str, Any]:
        device_id, key = self.devices[n]
        return usage(key, message_id, list(readings), device_id=device_id)

    def scan(self, rid: str, quantity: str, day: int = 3) -> dict[str, Any]:
        return reading(rid, "scan", quantity, ts(self.period, day))


def legacy_propose(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """ProposeContract as the chaincode before ADR 0026 wrote it: the same record without
    `reading_key_version` (what an existing ledger holds)."""
    record = {k: v for k, v in contracts.propose_contract(tx, body).items() if k != "reading_key_version"}
    tx.put(keys.contract(record["id"]), record)
    return record


def two_device_contract(client: TestClient, suffix: str = "md") -> TwoDevices:
    """Two assets with their own keys, one contract over both, ACTIVE from the first day of last month;
    ids carry `suffix` so several runs can share one ledger."""
    period, start = last_month()
    devices = tuple((f"mri-{suffix}-{n}", make_device_key(f"{suffix}-{n}")) for n in ("a", "b"))
    for device_id, key in devices:
        r = client.post("/v1/assets", json=sample_asset(key, device_id), headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
    contract_id = f"ctr-{suffix}"
    body = sample_contract(id=contract_id, assets=[d for d, _ in devices], start=start, **PLAN)
    r = client.post("/v1/contracts", json=body, headers=auth("tok-provider"))
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/contracts/{contract_id}/accept", headers=auth("tok-customer"))
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
    return TwoDevices(contract_id, period, devices)  # type: ignore[arg-type]


def cost_to_date(client: TestClient, c: TwoDevices) -> dict[str, Any]:
    r = client.get(f"/v1/contracts/{c.contract_id}/usage", params={"period": c.period},
                   headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    return r.json()


def close(client: TestClient, c: TwoDevices) -> dict[str, Any]:
    r = client.post(f"/v1/contracts/{c.contract_id}/periods/{c.period}/close", headers=auth("tok-operator"))
    assert r.status_code == 200, r.text
    return r.json()


# --- the checks (any ledger) ---------------------------------------------------------------------------


def check_both_devices_are_billed(client: TestClient, c: TwoDevices) -> dict[str, Any]:
    """Device A sends r-000001 (1 scan) and r-000002 (2), device B the same ids (10 and 20 scans): all four
    readings count, 33 scans = 330.00 (the old layout answered B 409 duplicate_reading and billed 30.00).
    Returns the issued invoice."""
    a = post_usage(client, c.message(0, "m-1", c.scan("r-000001", "1"), c.scan("r-000002", "2")))
    b = post_usage(client, c.message(1, "m-1", c.scan("r-000001", "10"), c.scan("r-000002", "20")))
    for answer in (a, b):
        assert answer.status_code == 202, answer.text
        assert (answer.json()["accepted"], answer.json()["duplicates"]) == (2, [])
    cost = cost_to_date(client, c)["cost"]
    assert (cost["readings"], cost["total"]) == (4, "330.00")
    invoice = close(client, c)
    assert (invoice["readings"], invoice["total"]) == (4, "330.00")
    assert [(ln["charge_id"], ln["quantity"], ln["amount"]) for ln in invoice["lines"]] == [
        ("scans", "33", "330.00")
    ]
    return invoice


def check_resend_and_conflict(client: TestClient, c: TwoDevices) -> None:
    """From one device: the same reading again is 409 duplicate_reading, the same id with other content is
    409 reading_conflict naming it; neither changes what is recorded or what the period costs."""
    first = post_usage(client, c.message(1, "m-1", c.scan("r-000001", "10"), c.scan("r-000002", "20")))
    assert first.status_code == 202 and first.json()["accepted"] == 2, first.text
    before = cost_to_date(client, c)
    again = post_usage(client, c.message(1, "m-2", c.scan("r-000002", "20")))
    assert again.status_code == 409 and again.json()["code"] == "duplicate_reading", again.text
    other = post_usage(client, c.message(1, "m-3", c.scan("r-000002", "21"), c.scan("r-000003", "5")))
    assert other.status_code == 409, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    problem = other.json()
    assert (problem["code"], problem["reading_ids"], problem["message_id"]) == (
        "reading_conflict", ["r-000002"], "m-3"
    )
    # the refusal is the message's verdict: a replay gets it again
    assert post_usage(client, c.message(1, "m-3", c.scan("r-000002", "21"), c.scan("r-000003", "5"))).json()[
        "code"
    ] == "reading_conflict"
    after = cost_to_date(client, c)
    assert (after["aggregate"], after["cost"]) == (before["aggregate"], before["cost"])
    assert (after["cost"]["readings"], after["cost"]["total"]) == (2, "300.00")  # r-000003 was not written


def check_same_ids_in_one_batch(client: TestClient, ledger: ControlledLedger, c: TwoDevices) -> None:
    """Both devices' messages, queued while a transaction is out, land in one RecordUsage and both count,
    though they share a message id and a reading id (each device gets its own answer: 1 and 2 accepted)."""
    ledger.entered.clear()
    ledger.gate = threading.Event()
    try:
        pilot = c.message(0, "m-0", c.scan("p-000001", "1"))
        both = [
            c.message(0, "m-1", c.scan("r-000001", "1")),
            c.message(1, "m-1", c.scan("r-000001", "1"), c.scan("r-000002", "1")),
        ]
        with ThreadPoolExecutor(max_workers=3) as pool:
            first = pool.submit(post_usage, client, pilot)
            assert ledger.entered.wait(30), "the pilot never reached the ledger"
            rest = [pool.submit(post_usage, client, m, wait="false") for m in both]
            queued = [f.result() for f in rest]
            ledger.gate.set()
            assert first.result().status_code == 202
    finally:
        ledger.gate.set()
        ledger.gate = None
    assert [q.json()["status"] for q in queued] == ["queued", "queued"]
    answers = [post_usage(client, m).json() for m in both]  # a replay learns the outcome
    assert [a["accepted"] for a in answers] == [1, 2], answers
    assert answers[0]["tx_id"] == answers[1]["tx_id"]  # one transaction held both
    assert ledger.usage_batches[-1] == 2
    assert cost_to_date(client, c)["cost"]["readings"] == 4


def check_lost_answer_is_rebuilt_per_device(
    client: TestClient, ledger: ControlledLedger, c: TwoDevices
) -> None:
    """Device B's message m-1 commits but its answer is lost; on the retry the ledger calls it a repeat and
    the hub rebuilds B's first answer from B's readings only, though device A's m-1 shares the message id
    and a reading id (the old hub mixed A's readings in, found two transactions and answered 409)."""
    a = post_usage(client, c.message(0, "m-1", c.scan("r-000001", "1"), c.scan("r-000002", "2")))
    assert a.status_code == 202 and a.json()["accepted"] == 2, a.text
    ledger.fail_after.append("unknown")
    ledger.hide_tx = True
    try:
        lost = post_usage(client, c.message(1, "m-1", c.scan("r-000001", "10")))
        assert lost.status_code == 503 and lost.json()["code"] == "commit_status_unknown", lost.text
    finally:
        ledger.hide_tx = False
    retry = post_usage(client, c.message(1, "m-1", c.scan("r-000001", "10")))
    assert retry.status_code == 202, retry.text
    assert (retry.json()["accepted"], retry.json()["duplicates"]) == (1, [])
    assert retry.json()["tx_id"] != a.json()["tx_id"]
    assert cost_to_date(client, c)["cost"]["total"] == "130.00"


def check_proof_verifies(client: TestClient, invoice: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The invoice's proof bundle holds every device's readings and verifies offline, also through
    `ledgerhub audit verify`; its CSV export lists each reading with its device."""
    r = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor"))
    assert r.status_code == 200, r.text
    bundle = r.json()
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    assert sorted((x["device_id"], x["id"]) for x in bundle["readings"]) == sorted(
        (d, rid) for d in {x["device_id"] for x in bundle["readings"]} for rid in ("r-000001", "r-000002")
    )
    path = tmp / "bundle.json"
    path.write_text(json.dumps(bundle))
    out = CliRunner().invoke(cli_app, ["audit", "verify", str(path)])
    assert out.exit_code == 0, out.output
    rows = readings_csv(bundle).splitlines()[1:]
    assert sorted((row.split(",")[1], row.split(",")[0]) for row in rows) == sorted(
        (x["device_id"], x["id"]) for x in bundle["readings"]
    )
    return bundle


# --- on the embedded ledger ----------------------------------------------------------------------------


def test_two_devices_with_the_same_reading_ids_are_both_billed(client, tmp_path):
    c = two_device_contract(client)
    invoice = check_both_devices_are_billed(client, c)
    bundle = check_proof_verifies(client, invoice, tmp_path)
    assert len(bundle["readings"]) == 4 and len(bundle["messages"]) == 2


def test_same_device_same_id_other_content_is_reading_conflict(client):
    check_resend_and_conflict(client, two_device_contract(client))


def test_two_devices_same_reading_id_in_one_batch(client, ledger):
    check_same_ids_in_one_batch(client, ledger, two_device_contract(client))


def test_a_lost_answer_is_rebuilt_from_the_devices_own_readings(client, ledger):
    check_lost_answer_is_rebuilt_per_device(client, ledger, two_device_contract(client))


def test_a_tampered_reading_of_the_second_device_is_reported(client, tmp_path):
    """With two devices sharing reading ids the verifier still pins each reading to its own device."""
    c = two_device_contract(client)
    bundle = check_proof_verifies(client, check_both_devices_are_billed(client, c), tmp_path)
    device_b = c.devices[1][0]
    tampered = json.loads(json.dumps(bundle))
    victim = next(x for x in tampered["readings"] if (x["device_id"], x["id"]) == (device_b, "r-000001"))
    victim["quantity"] = "1"  # device A's r-000001 quantity, under device B
    report = verify_bundle(tampered)
    assert not report.ok
    found = {(f.part, f.check) for f in report.failures}
    assert ("reading r-000001", "differs") in found, report.summary()


def test_a_contract_from_before_the_device_key_keeps_its_layout_and_proves(client, tmp_path, monkeypatch):
    """A contract recorded without `reading_key_version` (an existing ledger) keeps reading ids unique per
    contract: its readings are found, billed and proven under the old keys, and a second device's
    reading id already used is refused as reading_conflict, never silently dropped (ADR 0026)."""
    with monkeypatch.context() as patch:
        patch.setitem(FUNCTIONS, "ProposeContract", legacy_propose)
        c = two_device_contract(client, "old")
    contract = client.get(f"/v1/contracts/{c.contract_id}", headers=auth("tok-auditor")).json()
    assert "reading_key_version" not in contract
    a = post_usage(client, c.message(0, "m-1", c.scan("r-000001", "1"), c.scan("r-000002", "2")))
    assert a.status_code == 202 and a.json()["accepted"] == 2, a.text
    b = post_usage(client, c.message(1, "m-1", c.scan("r-000001", "10")))
    assert b.status_code == 409 and b.json()["code"] == "reading_conflict", b.text
    b = post_usage(client, c.message(1, "m-2", c.scan("b-000001", "10")))
    assert b.status_code == 202 and b.json()["accepted"] == 1, b.text
    invoice = close(client, c)
    assert (invoice["readings"], invoice["total"]) == (3, "130.00")
    r = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor"))
    bundle = r.json()
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    assert sorted(x["id"] for x in bundle["readings"]) == ["b-000001", "r-000001", "r-000002"]
    dropped = json.loads(json.dumps(bundle))
    dropped["readings"] = [x for x in dropped["readings"] if x["id"] != "b-000001"]
    found = {(f.part, f.check) for f in verify_bundle(dropped).failures}
    assert ("reading b-000001", "missing") in found
