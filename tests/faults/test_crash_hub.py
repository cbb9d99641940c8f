"""SIGKILL the hub at random moments while devices stream signed readings and invoices are delivered to the
SAP emulator; restart it and do it again, KILLS times (seeded). Then: every reading a device got a 2xx for is
on the ledger exactly once, every replayed message gets its first answer, every invoice is posted exactly
once per partner in the ERP, and the reopened ledger verifies.

The hub is a real process (tests/helpers/faults.py: `ledgerhub serve` plus the delivery engine) on the
embedded ledger and SQLite in one data dir; devices and the period closer are threads of the test that
retry with the same message id / the same close until they get an answer."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from connectors.emulators.sap_soap import SapSoapEmulator
from tests.helpers.api import TOKENS, auth
from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset, sample_contract, signed_message
from tests.helpers.delivery import PARTIES, months, postings_by_invoice, sap_settings
from tests.helpers.faults import free_port, kill, start_hub, stop, wait_ready

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = 20
SEED = 20261122
INVOICES = 10
CONTRACT = "ctr-crash"
ASSET = "dev-crash"
DELIVERY = {
    "concurrency": 2,
    "batch": 8,
    "claim_seconds": 3,
    "max_attempts": 200,
    "backoff_base": 0.05,
    "backoff_cap": 0.5,
    "breaker_threshold": 50,
    "breaker_open_seconds": 0.2,
    "poll_seconds": 0.05,
}


class Device(threading.Thread):
    """Sends signed messages one after the other; a message without an answer is resent unchanged."""

    def __init__(self, name: str, base: str, key: Any, stop_after: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.base = base
        self.key = key
        self.stop_after = stop_after
        self.acked: dict[str, dict[str, Any]] = {}  # message_id -> first 2xx answer
        self.messages: dict[str, dict[str, Any]] = {}
        self.readings: dict[str, str] = {}  # reading id -> message id
        self.errors: list[str] = []
        self.lost_answers = 0  # messages sent at least once with no answer (hub killed mid-request)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop_after.is_set() and n < 5000:
                n += 1
                stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(microsecond=0).isoformat()
                readings = [
                    {"id": f"{self.name}-{n}-{i}", "metric": "scan", "quantity": "1", "timestamp": stamp}
                    for i in range(3)
                ]
                message = signed_message(self.key, readings, device_id=ASSET, message_id=f"{self.name}-{n}")
                self.messages[message["message_id"]] = message
                self.send(client, message)

    def send(self, client: httpx.Client, message: dict[str, Any]) -> None:
        deadline = time.monotonic() + 300
        lost = False
        while time.monotonic() < deadline:
            try:
                r = client.post(f"{self.base}/v1/usage", json=message, headers=auth("tok-device"))
            except httpx.ConnectError:  # nobody listening: the request never left
                time.sleep(0.05)
                continue
            except httpx.TransportError:  # sent, but the hub died before answering
                lost = True
                time.sleep(0.05)
                continue
            if r.status_code == 202:
                self.lost_answers += lost
                self.acked[message["message_id"]] = r.json()
                for reading in message["readings"]:
                    self.readings[reading["id"]] = message["message_id"]
                return
            if r.status_code in (500, 502, 503):  # in-flight batch lost or hub shutting down: resend
                time.sleep(0.05)
                continue
            self.errors.append(f"{message['message_id']}: {r.status_code} {r.text[:200]}")
            return
        self.errors.append(f"{message['message_id']}: no answer in 300 s")


class Closer(threading.Thread):
    """Closes the contract's past periods one by one, retrying each until the hub answers 200."""

    def __init__(self, base: str, periods: list[str]) -> None:
        super().__init__(name="closer", daemon=True)
        self.base = base
        self.periods = periods
        self.closed: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for period in self.periods:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    try:
                        r = client.post(
                            f"{self.base}/v1/contracts/{CONTRACT}/periods/{period}/close",
                            headers=auth("tok-operator"),
                        )
                    except httpx.TransportError:
                        time.sleep(0.1)
                        continue
                    if r.status_code == 200:
                        self.closed.append(r.json()["id"])
                        break
                    if r.status_code >= 500:
                        time.sleep(0.1)
                        continue
                    self.errors.append(f"{period}: {r.status_code} {r.text[:200]}")
                    break
                time.sleep(0.2)


def hub_env(data_dir: Path, emulator: SapSoapEmulator, database_url: str) -> dict[str, str]:
    return {
        "LEDGERHUB_DATA_DIR": str(data_dir),
        "LEDGERHUB_DATABASE_URL": database_url,
        "LEDGERHUB_TOKENS": json.dumps(TOKENS),
        "LEDGERHUB_SCHEDULER_ENABLED": "false",
        "LEDGERHUB_CONNECTORS": json.dumps({"sap-soap": sap_settings(emulator)}),
        "LEDGERHUB_PARTIES": json.dumps(PARTIES),
        "LEDGERHUB_TEST_DELIVERY": json.dumps(DELIVERY),
    }


def setup_contract(base: str, key: Any) -> None:
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{base}/v1/assets", json=sample_asset(key, ASSET), headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
        contract = sample_contract(
            id=CONTRACT,
            assets=[ASSET],
            start="2008-01-01",
            erp={"provider": "sap-soap", "customer": "sap-soap"},
        )
        r = client.post(f"{base}/v1/contracts", json=contract, headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
        r = client.post(f"{base}/v1/contracts/{CONTRACT}/accept", headers=auth("tok-customer"))
        assert r.status_code == 200, r.text


def wait_delivered(base: str, invoices: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    pending = list(invoices)
    with httpx.Client(timeout=10) as client:
        while pending and time.monotonic() < deadline:
            r = client.get(f"{base}/v1/invoices/{pending[0]}", headers=auth("tok-provider"))
            if r.status_code == 200 and r.json().get("status") == "POSTED":
                pending.pop(0)
                continue
            time.sleep(0.2)
    assert not pending, f"invoices never POSTED: {pending}"


def reopen_and_check(data_dir: Path, devices: list[Device]) -> dict[str, Any]:
    from hub.config import Settings
    from hub.keys import build_signers
    from hub.ledger import open_ledger
    from hub.ledger.verify import verify_ledger

    settings = Settings(data_dir=data_dir)
    ledger = open_ledger(settings, build_signers(settings))
    try:
        report = verify_ledger(ledger)
        assert report.ok, report.summary()
        tz = ZoneInfo(sample_contract()["timezone"])
        stamps = [r["timestamp"] for d in devices for m in d.messages.values() for r in m["readings"]]
        periods = {dt.datetime.fromisoformat(s).astimezone(tz).strftime("%Y-%m") for s in stamps}
        on_ledger: list[str] = []
        for period in sorted(periods):
            answer = json.loads(
                ledger.evaluate(
                    "GetReadings", [json.dumps({"contract_id": CONTRACT, "period": period})], as_org=PROVIDER
                )
            )
            items = answer["readings"] if isinstance(answer, dict) else answer
            on_ledger += [r["id"] for r in items]
        return {"report": report, "readings": on_ledger}
    finally:
        ledger.close()


def test_sigkill_storm_loses_nothing_and_bills_nothing_twice(tmp_path: Path, database_url: str) -> None:
    """On SQLite and on PostgreSQL (the hub's own database; the embedded ledger is SQLite either way)."""
    rng = random.Random(SEED)
    data_dir = tmp_path / "hub"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "hub.log"
    key = make_device_key("crash")
    with SapSoapEmulator() as emulator:
        env = hub_env(data_dir, emulator, database_url)
        proc = start_hub(env, port, log)
        try:
            wait_ready(port, proc, log=log)
            setup_contract(base, key)
            stop_devices = threading.Event()
            devices = [Device(f"d{i}", base, key, stop_devices) for i in range(2)]
            closer = Closer(base, months(dt.date(2008, 1, 1), INVOICES))
            for thread in (*devices, closer):
                thread.start()
            kills = 0
            while kills < KILLS:
                time.sleep(rng.uniform(0.2, 1.5))  # let readings and deliveries get under way
                kill(proc)
                kills += 1
                proc = start_hub(env, port, log)
                wait_ready(port, proc, log=log)
            stop_devices.set()
            closer.join(300)
            for device in devices:
                device.join(300)
            assert not closer.is_alive() and not any(d.is_alive() for d in devices)
            assert not closer.errors, closer.errors
            assert not [e for d in devices for e in d.errors], [d.errors for d in devices]
            invoices = [f"inv-{CONTRACT}-{p}" for p in months(dt.date(2008, 1, 1), INVOICES)]
            assert sorted(closer.closed) == sorted(invoices)
            wait_delivered(base, invoices)
            # replays after all those crashes: the first answer, every time
            with httpx.Client(timeout=10) as client:
                for device in devices:
                    for message_id, first in device.acked.items():
                        r = client.post(
                            f"{base}/v1/usage", json=device.messages[message_id], headers=auth("tok-device")
                        )
                        assert r.status_code == 202 and r.json() == first, (message_id, r.text, first)
        finally:
            stop(proc)
        counts = postings_by_invoice(emulator)
        assert counts == {(i, k): 1 for i in invoices for k in ("debtor", "creditor")}, counts
    acked = {rid for d in devices for rid in d.readings}
    checked = reopen_and_check(data_dir, devices)
    on_ledger = checked["readings"]
    assert len(on_ledger) == len(set(on_ledger)), "a reading is on the ledger twice"
    assert acked <= set(on_ledger), f"acknowledged readings lost: {sorted(acked - set(on_ledger))[:10]}"
    sent = {r["id"] for d in devices for m in d.messages.values() for r in m["readings"]}
    assert set(on_ledger) <= sent
    lost_answers = sum(d.lost_answers for d in devices)
    assert lost_answers >= 1, "no kill ever interrupted a device request: the crash window was not exercised"
    print(
        f"\n[{database_url.split(':')[0]}] {kills} SIGKILLs; {sum(len(d.acked) for d in devices)} messages / "
        f"{len(acked)} readings "
        f"acknowledged ({lost_answers} after a lost answer), {len(on_ledger)} on the ledger; "
        f"{len(invoices)} invoices x 2 postings; "
        f"{checked['report'].summary()}"
    )
