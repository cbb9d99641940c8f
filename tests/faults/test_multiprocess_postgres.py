"""PostgreSQL in production shape: several hub processes sharing one database.

1. Three dispatcher processes claim from one PostgreSQL outbox (`FOR UPDATE SKIP LOCKED`) and deliver to one
   SAP emulator: every invoice is posted exactly once per partner, every delivery was claimed and sent by
   exactly one worker (one `deliver` attempt each: a double claim would show as two), and the work was
   shared between the processes.
2. Three processes run the real HubScheduler with the real DB lease and a probe job: at no moment do two
   processes run the job (no interleaved start/end), and when the holder is SIGKILLed another takes over.

The ledger is the test process's embedded ledger, served to the workers (tests/helpers/multiproc.py, ADR
0021): the embedded ledger is single-process by design; replicas share a ledger over the network as with
Fabric.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

from connectors.emulators.sap_soap import SapSoapEmulator
from hub.delivery.models import Delivery, DeliveryAttempt
from tests.helpers.api import embedded_ledger
from tests.helpers.delivery import (
    FAST,
    PARTIES,
    delivery_service,
    hub_settings_for,
    issue_invoices,
    postings_by_invoice,
    sap_settings,
)
from tests.helpers.multiproc import LedgerServer

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
INVOICES = 24


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.multiproc", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def test_three_dispatcher_processes_post_every_invoice_exactly_once(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database()
    ledger = embedded_ledger(tmp_path / "ledger")
    server = LedgerServer(ledger, expected=WORKERS).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with SapSoapEmulator() as emulator:
            invoices = issue_invoices(ledger, INVOICES, contract_id="ctr-mp")
            owner = delivery_service(ledger, hub_settings_for(tmp_path, emulator, url), FAST)
            assert (
                owner.consume_events() == 2 * INVOICES
            )  # the outbox rows, created once by the ledger's owner
            host, port = server.address
            options = {
                "concurrency": 2,
                "batch": 3,
                "claim_seconds": 30,
                "max_attempts": 12,
                "backoff_base": 0.01,
                "backoff_cap": 0.05,
                "poll_seconds": 0.02,
            }
            env = {
                "LEDGER_ADDRESS": f"{host}:{port}",
                "LEDGERHUB_DATABASE_URL": url,
                "LEDGERHUB_DATA_DIR": str(tmp_path / "worker"),
                "DELIVERY_OPTIONS": json.dumps(options),
                "LEDGERHUB_CONNECTORS": json.dumps({"sap-soap": sap_settings(emulator)}),
                "LEDGERHUB_PARTIES": json.dumps(PARTIES),
            }
            procs = [
                spawn(["dispatch", f"worker-{i}"], env, tmp_path / f"worker-{i}.log") for i in range(WORKERS)
            ]
            for proc in procs:
                assert proc.wait(180) == 0, (tmp_path / "worker-0.log").read_text()[-3000:]
            counts = postings_by_invoice(emulator)
        assert counts == {(i, k): 1 for i in invoices for k in ("debtor", "creditor")}, counts
        with owner.db() as session:
            rows = session.scalars(select(Delivery)).all()
            attempts = session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.action == "deliver")
            ).all()
        assert len(rows) == 2 * INVOICES and all(r.state == "delivered" for r in rows)
        per_row = Counter(a.delivery_id for a in attempts)
        assert set(per_row.values()) == {1}, f"a delivery was sent more than once: {per_row.most_common(3)}"
        by_worker = Counter(a.worker.split(":")[0] if a.worker else None for a in attempts)
        assert len(by_worker) >= 2, f"the work was not shared: {by_worker}"
        for invoice_id in invoices:
            record = json.loads(
                ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org="ProviderMSP")
            )
            assert record["status"] == "POSTED" and len(record["erp_refs"]) == 2
        print(f"\n{2 * INVOICES} deliveries by {WORKERS} processes: {dict(by_worker)}")
        owner.dispatcher.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        server.close()
        ledger.close()


def test_dispatcher_killed_mid_run_with_erp_faults_still_posts_exactly_once(
    tmp_path: Path, postgres_server
) -> None:
    """Three dispatcher processes, a flaky ERP (seeded: slow answers, 5xx, hangs past the client timeout,
    postings whose answer is dropped) and one dispatcher SIGKILLed while it holds claims: its rows come
    back when the claim lease ends, "maybe sent" rows are looked up before any resend, and every invoice
    is still posted exactly once per partner."""
    from connectors.emulators.faults import FaultInjector, FaultPlan

    url = postgres_server.create_database()
    ledger = embedded_ledger(tmp_path / "ledger")
    server = LedgerServer(ledger, expected=WORKERS).start()
    procs: list[subprocess.Popen[bytes]] = []
    plan = FaultPlan(
        probability=0.35,
        kinds=("slow", "error_5xx", "timeout", "drop_after_post"),
        seed=21,
        hang_seconds=1.5,
        slow_seconds=0.3,
    )
    try:
        with SapSoapEmulator(faults=FaultInjector(plan)) as emulator:
            invoices = issue_invoices(ledger, INVOICES, contract_id="ctr-mpk")
            owner = delivery_service(ledger, hub_settings_for(tmp_path, emulator, url), FAST)
            assert owner.consume_events() == 2 * INVOICES
            host, port = server.address
            options = {
                "concurrency": 2,
                "batch": 3,
                "claim_seconds": 3,
                "max_attempts": 40,
                "backoff_base": 0.01,
                "backoff_cap": 0.1,
                "breaker_threshold": 100,
                "poll_seconds": 0.02,
            }
            env = {
                "LEDGER_ADDRESS": f"{host}:{port}",
                "LEDGERHUB_DATABASE_URL": url,
                "LEDGERHUB_DATA_DIR": str(tmp_path / "worker"),
                "DELIVERY_OPTIONS": json.dumps(options),
                "LEDGERHUB_CONNECTORS": json.dumps({"sap-soap": sap_settings(emulator, timeout=1.0)}),
                "LEDGERHUB_PARTIES": json.dumps(PARTIES),
            }
            procs = [
                spawn(["dispatch", f"worker-{i}"], env, tmp_path / f"worker-{i}.log") for i in range(WORKERS)
            ]
            deadline = time.monotonic() + 120
            killed = False
            while time.monotonic() < deadline and not killed:
                with owner.db() as session:
                    claimed = session.scalars(
                        select(Delivery.id).where(
                            Delivery.claimed_by.like("worker-0:%"), Delivery.state != "delivered"
                        )
                    ).all()
                if claimed:
                    os.kill(procs[0].pid, signal.SIGKILL)
                    killed = True
                time.sleep(0.02)
            assert killed, "worker-0 never held a claim"
            assert procs[0].wait(30) == -signal.SIGKILL
            for i, proc in enumerate(procs[1:], start=1):
                assert proc.wait(300) == 0, (tmp_path / f"worker-{i}.log").read_text()[-3000:]
            counts = postings_by_invoice(emulator)
            injected = dict(emulator.faults.injected)
        assert counts == {(i, k): 1 for i in invoices for k in ("debtor", "creditor")}, counts
        with owner.db() as session:
            rows = session.scalars(select(Delivery)).all()
        assert len(rows) == 2 * INVOICES and all(r.state == "delivered" for r in rows), Counter(
            r.state for r in rows
        )
        for invoice_id in invoices:
            record = json.loads(
                ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org="ProviderMSP")
            )
            assert record["status"] == "POSTED" and len(record["erp_refs"]) == 2
        assert sum(injected.values()) > 0
        print(f"\nERP faults injected: {injected}; worker-0 SIGKILLed holding {len(claimed)} claims")
        owner.dispatcher.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        server.close()
        ledger.close()


def test_db_lease_one_runner_at_a_time_across_processes(tmp_path: Path, postgres_server) -> None:
    from hub.store.session import make_engine, migrate

    url = postgres_server.create_database()
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE lease_probe (seq SERIAL PRIMARY KEY, holder TEXT NOT NULL, "
                "phase TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
            )
        )
    env = {
        "LEDGERHUB_DATABASE_URL": url,
        "LEASE_TTL": "1.5",
        "PROBE_EVERY": "0.2",
        "PROBE_JOB_SECONDS": "0.1",
        "RUN_SECONDS": "12",
    }
    procs = {f"p{i}": spawn(["lease", f"p{i}"], env, tmp_path / f"lease-{i}.log") for i in range(WORKERS)}
    killed = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and killed is None:  # wait for a holder with a few runs, kill it
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT holder FROM lease_probe WHERE phase = 'end'")).all()
            holders = Counter(r[0] for r in rows)
            if holders and holders.most_common(1)[0][1] >= 5:
                killed = holders.most_common(1)[0][0]
                os.kill(procs[killed].pid, signal.SIGKILL)
            time.sleep(0.1)
        assert killed is not None, "no process ever ran the job"
        for name, proc in procs.items():
            proc.wait(120)
            if name != killed:
                assert proc.returncode == 0, (tmp_path / f"lease-{name[1:]}.log").read_text()[-2000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT holder, phase FROM lease_probe ORDER BY seq")).all()
    engine.dispose()
    # runs never overlap: each start is followed by the same holder's end, except the killed holder's last run
    running = None
    overlaps = []
    for holder, phase in rows:
        if phase == "start":
            if running is not None and running != killed:
                overlaps.append((running, holder))
            running = holder
        else:
            assert holder == running, f"{holder} ended a run it did not start (running: {running})"
            running = None
    assert not overlaps, f"two processes ran the job at once: {overlaps[:5]}"
    after_kill = [
        h for h, p in rows[[i for i, (h, _) in enumerate(rows) if h == killed][-1] + 1 :] if p == "end"
    ]
    assert after_kill and killed not in after_kill, "nobody took over after the holder was killed"
    ends = Counter(h for h, p in rows if p == "end")
    print(
        f"\nlease: {sum(ends.values())} job runs, by holder {dict(ends)}; {killed} SIGKILLed, "
        f"{after_kill[0]} took over"
    )
