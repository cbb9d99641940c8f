"""Crashes on a real Fabric network (ADR 0038).

`test_kill_9_storm_under_ingestion_closing_and_delivery`: a hub process (`ledgerhub serve` with the delivery
engine, on the session's Fabric network, SAP and Oracle emulators as the two ERPs) takes steady ingestion
from several devices, each sending signed messages with fixed message ids and resending what failed, while
an operator closes billing periods and the hub delivers the invoices. Meanwhile the customer's peer, the
provider's peer (the hub's own gateway), the orderer, the chaincode server and the hub itself are each
`kill -9`ed KILLS_EACH times, in a seeded random order, and restarted after a few seconds. Afterwards:
every acknowledged reading is on the ledger exactly once, every invoice is posted exactly once per ERP,
the three peers agree on the chain (height and current block hash) and on the contract's state, and the
hub's event consumers resumed without missing an invoice.

`test_orderer_down_answers_503_with_retry_after`: with the orderer gone, a usage post is answered `503
ledger_unavailable` with `Retry-After` as soon as the gateway reports that no orderer took the transaction,
not after the commit timeout; after a restart the same message is accepted once.

The seed is printed (LEDGERHUB_FAULT_SEED=<n> replays a schedule); no assertion is about time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import create_engine, text

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.config import Settings
from tests.helpers.api import TOKENS, auth, hub_client, last_month
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.delivery import sap_settings
from tests.helpers.erp import PARTIES, oracle_settings
from tests.helpers.fabric_faults import Closer, Device, NodeKiller
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.faults import free_port, kill, start_hub, stop, wait_ready

pytestmark = [pytest.mark.fabric, pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(2400)]

KINDS = ("peer-customer", "peer-provider", "orderer", "chaincode", "hub")
KILLS_EACH = 2
DEVICES = 8
READINGS_PER_MESSAGE = 20
PAST_PERIODS = 3  # closed and delivered while the crashes go on
AUDITOR = "AuditorMSP"
DELIVERY = {  # short claims and quick retries: a killed hub's claims come back within seconds
    "concurrency": 2, "batch": 8, "claim_seconds": 5, "max_attempts": 1000, "backoff_base": 0.1,
    "backoff_cap": 1.0, "breaker_threshold": 1000, "breaker_open_seconds": 0.5, "poll_seconds": 0.1,
}


def past_periods(count: int) -> list[str]:
    period, _ = last_month()
    out = [period]
    while len(out) < count:
        y, m = int(out[-1][:4]), int(out[-1][5:])
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        out.append(f"{y:04d}-{m:02d}")
    return sorted(out)


def hub_env(network: FabricNetwork, data_dir: Path, sap: Any, oracle: Any) -> dict[str, str]:
    return {
        "LEDGERHUB_LEDGER": "fabric",
        "LEDGERHUB_FABRIC_NETWORK_DIR": str(network.network_json),
        "LEDGERHUB_DATA_DIR": str(data_dir),
        "LEDGERHUB_TOKENS": json.dumps(TOKENS),
        "LEDGERHUB_SCHEDULER_ENABLED": "false",
        "LEDGERHUB_CONNECTORS": json.dumps({"sap-soap": sap_settings(sap, timeout=5.0),
                                            "oracle-rest": oracle_settings(oracle, timeout=5.0)}),
        "LEDGERHUB_PARTIES": json.dumps(PARTIES),
        "LEDGERHUB_TEST_DELIVERY": json.dumps(DELIVERY),
    }


def call(client: httpx.Client, method: str, url: str, expect: int, **kw: Any) -> dict[str, Any]:
    """One set-up call, retried while the network settles (5xx); anything else unexpected fails."""
    for _ in range(60):
        r = client.request(method, url, **kw)
        if r.status_code == expect:
            return r.json()
        assert r.status_code >= 500, r.text
        time.sleep(1)
    raise AssertionError(f"{method} {url}: {r.status_code} {r.text[:300]}")


def set_up(base: str, suffix: str, keys: list[Any], periods: list[str]) -> tuple[str, list[str]]:
    """Devices, a contract on them (both ERPs), and a message of readings in each past period."""
    contract_id = f"ctr-{suffix}"
    devices = [f"dev-{suffix}-{i}" for i in range(len(keys))]
    with httpx.Client(base_url=base, timeout=120) as client:
        for device, key in zip(devices, keys, strict=True):
            call(client, "POST", "/v1/assets", 201, json=sample_asset(key, device),
                 headers=auth("tok-provider"))
        contract = sample_contract(id=contract_id, assets=devices, start=f"{periods[0]}-01",
                                   erp={"provider": "sap-soap", "customer": "oracle-rest"})
        call(client, "POST", "/v1/contracts", 201, json=contract, headers=auth("tok-provider"))
        call(client, "POST", f"/v1/contracts/{contract_id}/accept", 200, headers=auth("tok-customer"))
        for period in periods:
            readings = [{"id": f"{suffix}-{period}-{i}", "metric": "scan", "quantity": "1",
                         "timestamp": f"{period}-{10 + i:02d}T10:00:00+01:00"} for i in range(10)]
            message = signed_message(keys[0], readings, device_id=devices[0], message_id=f"{suffix}-{period}")
            assert call(client, "POST", "/v1/usage", 202, json=message, headers=auth("tok-device"))[
                "accepted"] == 10
    return contract_id, devices


def wait_for(what: str, probe: Any, bound: float = 300.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


def posted(base: str, invoice_id: str) -> bool:
    try:
        r = httpx.get(f"{base}/v1/invoices/{invoice_id}", headers=auth("tok-provider"), timeout=30)
    except httpx.TransportError:
        return False
    return r.status_code == 200 and len(r.json().get("erp_refs", [])) == 2


def chain_info(network: FabricNetwork, org: str) -> dict[str, Any]:
    out = network.peer_cli(org, "channel", "getinfo", "-c", network.info["channel"])
    return json.loads(out[out.index("{"): out.rindex("}") + 1])


def evaluate(ledger: Any, fn: str, arg: dict[str, Any], org: str) -> Any:
    return json.loads(ledger.evaluate(fn, [json.dumps(arg)], as_org=org))


def test_orderer_down_answers_503_with_retry_after(fabric_network: FabricNetwork, tmp_path: Path) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    killer = NodeKiller(fabric_network)
    suffix = f"odn{os.getpid()}{int(time.time()) % 100000}"
    key = make_device_key(suffix)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    settings = Settings(data_dir=tmp_path / "hub", tokens=TOKENS, ingest_retry_after_seconds=2)
    period, start = last_month()
    try:
        with hub_client(settings, ledger, background=False) as client:
            device, contract_id = f"dev-{suffix}", f"ctr-{suffix}"
            assert client.post("/v1/assets", json=sample_asset(key, device),
                               headers=auth("tok-provider")).status_code == 201
            contract = sample_contract(id=contract_id, assets=[device], start=start)
            r = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            assert client.post(f"/v1/contracts/{contract_id}/accept",
                               headers=auth("tok-customer")).status_code == 200
            readings = [{"id": f"{suffix}-{i}", "metric": "scan", "quantity": "1",
                         "timestamp": f"{period}-0{1 + i}T10:00:00+01:00"} for i in range(3)]
            message = signed_message(key, readings, device_id=device, message_id=f"{suffix}-m1")
            spec = killer.kill("orderer")
            try:
                began = time.monotonic()
                refused = client.post("/v1/usage", json=message, headers=auth("tok-device"))
                elapsed = time.monotonic() - began
                print(f"\norderer down: {refused.status_code} {refused.json().get('code')} "
                      f"Retry-After {refused.headers.get('Retry-After')} after {elapsed:.2f} s")
                assert refused.status_code == 503, refused.text
                assert refused.json()["code"] == "ledger_unavailable", refused.text
                assert refused.headers["Retry-After"] == "2"
            finally:
                killer.restart(spec)
            answers = []
            for _ in range(2):  # the resend is accepted once; its replay is the same answer
                answers.append(call(client, "POST", "/v1/usage", 202, json=message,
                                    headers=auth("tok-device")))
            assert answers[0]["accepted"] == 3 and answers[0]["duplicates"] == []
            assert answers[1] == answers[0]
        on_ledger = [r["id"] for r in evaluate(ledger, "GetReadings",
                                                {"contract_id": contract_id, "period": period}, PROVIDER)[
            "readings"]]
    finally:
        ledger.close()
    assert sorted(on_ledger) == sorted(r["id"] for r in readings)


def test_kill_9_storm_under_ingestion_closing_and_delivery(fabric_network: FabricNetwork,
                                                          tmp_path: Path) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    began = time.monotonic()
    seed = int(os.environ.get("LEDGERHUB_FAULT_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"\nfault schedule seed: {seed} (LEDGERHUB_FAULT_SEED={seed} replays it)")
    rng = random.Random(seed)
    schedule = [kind for kind in KINDS for _ in range(KILLS_EACH)]
    rng.shuffle(schedule)
    suffix = f"storm{seed}x{int(time.time()) % 100000}"
    keys = [make_device_key(f"{suffix}-{i}") for i in range(DEVICES)]
    periods = past_periods(PAST_PERIODS)
    killer = NodeKiller(fabric_network)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    start_height = ledger.height()
    data_dir, port = tmp_path / "hub", free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "hub.log"
    kills: Counter[str] = Counter()
    with SapSoapEmulator() as sap, OracleRestEmulator(shared_dir=None) as oracle:
        env = hub_env(fabric_network, data_dir, sap, oracle)
        hub = start_hub(env, port, log)
        try:
            wait_ready(port, hub, timeout=300, log=log)
            contract_id, device_ids = set_up(base, suffix, keys, periods)
            invoices = [f"inv-{contract_id}-{p}" for p in periods]
            stop_devices = threading.Event()
            devices = [Device(f"{suffix}-d{i}", base, key, device_id, READINGS_PER_MESSAGE, stop_devices)
                       for i, (key, device_id) in enumerate(zip(keys, device_ids, strict=True))]
            closer = Closer(base, contract_id)
            for thread in (*devices, closer):
                thread.start()
            acked = lambda: sum(len(d.acked) for d in devices)  # noqa: E731
            wait_for("first acknowledgements", lambda: acked() >= DEVICES)
            to_close = list(periods)
            for n, kind in enumerate(schedule):
                if to_close and n % 2 == 0:
                    closer.todo.put(to_close.pop(0))  # closed (and its invoice delivered) meanwhile
                time.sleep(rng.uniform(1.0, 4.0))
                before = acked()
                print(f"  kill -9 {kind} ({n + 1}/{len(schedule)}), {before} messages acknowledged so far")
                if kind == "hub":
                    kill(hub)
                    time.sleep(rng.uniform(2.0, 5.0))
                    hub = start_hub(env, port, log)
                    wait_ready(port, hub, timeout=300, log=log)
                else:
                    spec = killer.kill(kind)
                    time.sleep(rng.uniform(2.0, 5.0))
                    killer.restart(spec)
                kills[kind] += 1
                # the system recovers before the next crash: new acknowledgements after the restart
                wait_for(f"ingestion to resume after {kind}", lambda b=before: acked() > b + DEVICES)
            for period in to_close:
                closer.todo.put(period)
            closer.todo.put(None)
            stop_devices.set()
            for thread in (*devices, closer):
                thread.join(900)
                assert not thread.is_alive(), f"{thread.name} hangs"
            assert not closer.errors, closer.errors
            assert not [e for d in devices for e in d.errors], [d.errors for d in devices]
            assert sorted(closer.closed) == sorted(invoices)
            for invoice_id in invoices:
                wait_for(f"{invoice_id} posted to both ERPs", lambda i=invoice_id: posted(base, i))
        finally:
            stop(hub)
        sap_counts = Counter(p["item_text"] for p in sap.postings())
        oracle_counts = Counter(p["InvoiceNumber"] for p in oracle.postings("invoices"))
    try:
        on_ledger = check_ledger(fabric_network, ledger, contract_id, devices, invoices, start_height,
                                 data_dir)
    finally:
        ledger.close()
    acked_ids = {r for d in devices for r in d.acked_readings}
    refusals = sum((d.refusals for d in devices), Counter())
    print(f"kills per node kind: {dict(kills)}; seed {seed}")
    print(f"messages acknowledged: {sum(len(d.acked) for d in devices)}; readings acknowledged: "
          f"{len(acked_ids)}, found exactly once on the ledger: "
          f"{sum(1 for r in acked_ids if on_ledger[r] == 1)}; invoices: {len(invoices)}, postings "
          f"SAP {[sap_counts[i] for i in invoices]}, Oracle {[oracle_counts[i] for i in invoices]}")
    print(f"resends after: {dict(refusals)}; longest single request "
          f"{max(d.longest_wait for d in devices):.1f} s; test took {time.monotonic() - began:.0f} s")
    assert {i: (sap_counts[i], oracle_counts[i]) for i in invoices} == {i: (1, 1) for i in invoices}
    assert kills == {kind: KILLS_EACH for kind in KINDS}
    lost_answers = sum(n for what, n in refusals.items() if what in ("RemoteProtocolError", "ReadError"))
    assert lost_answers >= 1, "no hub kill interrupted a request: the crash window was not exercised"


def check_ledger(network: FabricNetwork, ledger: Any, contract_id: str, devices: list[Device],
                 invoices: list[str], start_height: int, data_dir: Path) -> Counter[str]:
    """The ledger and the hub's store after the storm; returns how often each reading id is on the ledger."""
    # every peer holds the same chain, the restarted customer peer included
    orgs = {"provider": PROVIDER, "customer": CUSTOMER, "auditor": AUDITOR}
    infos = wait_for("the three peers at one height", lambda: (
        lambda i: i if len({x["height"] for x in i.values()}) == 1 else None)(
            {k: chain_info(network, k) for k in orgs}), bound=180, every=1.0)
    assert len({x["currentBlockHash"] for x in infos.values()}) == 1, infos
    # the readings: every acknowledged one exactly once, nothing that was never sent, the same on each peer
    tz = ZoneInfo(sample_contract()["timezone"])
    live = sorted({dt.datetime.fromisoformat(s).astimezone(tz).strftime("%Y-%m")
                   for d in devices for s in d.stamps})
    on_ledger: list[str] = []
    for period in live:
        arg = {"contract_id": contract_id, "period": period}
        seen = {org: sorted((r["device_id"], r["id"]) for r in evaluate(ledger, "GetReadings", arg, org)[
            "readings"]) for org in (PROVIDER, CUSTOMER)}
        assert seen[PROVIDER] == seen[CUSTOMER], "the restarted peer's state differs"
        usage = {org: evaluate(ledger, "GetUsage", arg, org)["aggregate"] for org in (PROVIDER, CUSTOMER)}
        assert usage[PROVIDER] == usage[CUSTOMER], usage
        on_ledger += [rid for _device, rid in seen[PROVIDER]]
    acked = {r for d in devices for r in d.acked_readings}
    sent = {r for d in devices for r in d.sent}
    assert len(on_ledger) == len(set(on_ledger)), "a reading is on the ledger twice"
    assert acked <= set(on_ledger), f"acknowledged readings lost: {sorted(acked - set(on_ledger))[:10]}"
    assert set(on_ledger) <= sent
    assert len(acked) >= 100 * DEVICES, f"only {len(acked)} readings acknowledged: too little traffic to tell"
    # the invoices: each issued once, and the hub's event consumers saw each issue exactly once
    issued: dict[str, int] = {}
    for event in ledger.events(start_height, timeout=10):
        if event.name == "InvoiceIssued":
            invoice_id = json.loads(event.payload)["invoice_id"]
            if invoice_id in invoices:
                assert invoice_id not in issued, f"{invoice_id} issued twice"
                issued[invoice_id] = event.block
    assert sorted(issued) == sorted(invoices)
    for invoice_id in invoices:
        stored = evaluate(ledger, "GetInvoice", {"id": invoice_id}, CUSTOMER)
        assert stored["status"] == "POSTED" and stored["readings"] == 10, stored
    engine = create_engine(Settings(data_dir=data_dir).effective_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT invoice_id, target, state FROM delivery")).all()
            views = dict(conn.execute(text("SELECT id, block FROM invoice_view")).all())
            checkpoints = dict(conn.execute(text("SELECT consumer, block FROM event_checkpoint")).all())
    finally:
        engine.dispose()
    mine = Counter((i, t) for i, t, state in rows if i in invoices and state == "delivered")
    assert mine == {(i, t): 1 for i in invoices for t in ("provider", "customer")}, rows
    assert {i: views.get(i) for i in invoices} == issued
    last = max(issued.values())
    assert checkpoints["delivery"] >= last and checkpoints["read-models"] >= last, checkpoints
    return Counter(on_ledger)
