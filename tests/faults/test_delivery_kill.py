"""kill -9 of the dispatcher process mid-run, twice, then a restart: every invoice still posted exactly once
and recorded on the ledger. The dispatcher runs in a real subprocess (embedded ledger + outbox database);
the SAP emulator runs here and counts postings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.emulators.faults import FaultPlan
from connectors.emulators.sap_soap import WSDL_PATH, SapSoapEmulator
from hub.delivery.models import Delivery
from hub.store.session import make_engine, make_sessionmaker
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import issue_invoices, postings_by_invoice, sap_settings

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
INVOICES = 40


def start_worker(config: dict, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.helpers.delivery import worker_main; worker_main()",
         json.dumps(config)],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float = 180.0) -> bool:
    gate = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        gate.wait(0.02)
    return False


def test_dispatcher_killed_mid_run_restarts_and_delivers_exactly_once(tmp_path: Path,
                                                                      database_url: str) -> None:
    ledger_dir = tmp_path / "ledger"
    ledger = embedded_ledger(ledger_dir)
    ids = issue_invoices(ledger, INVOICES)
    ledger.close()
    log = tmp_path / "worker.log"
    with SapSoapEmulator() as emulator:
        # slow answers and lost answers make the run long enough to be killed in the middle of it
        emulator.faults.configure(FaultPlan(probability=0.4, kinds=("slow", "drop_after_post", "error_5xx"),
                                            seed=7, slow_seconds=0.05))
        config = {
            "ledger_dir": str(ledger_dir), "database_url": database_url,
            "connectors": {"sap-soap": sap_settings(emulator, wsdl=str(WSDL_PATH), timeout=2.0)},
            "options": {"concurrency": 2, "batch": 4, "claim_seconds": 1.0, "max_attempts": 20,
                        "backoff_base": 0.01, "backoff_cap": 0.05, "poll_seconds": 0.01},
        }
        kills = []
        for threshold in (10, 35):
            worker = start_worker(config, log)
            assert wait_for(lambda t=threshold: len(emulator.postings()) >= t), log.read_text()[-3000:]
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(timeout=30) == -signal.SIGKILL
            kills.append(len(emulator.postings()))
        assert kills[-1] < 2 * INVOICES, "the worker finished before it was killed: the test proves nothing"
        engine = make_engine(database_url)
        db = make_sessionmaker(engine)
        with db() as session:
            open_rows = session.scalars(select(Delivery.id).where(Delivery.state != "delivered")).all()
        assert open_rows, "nothing was left to do after the kills"

        worker = start_worker(config, log)
        assert worker.wait(timeout=300) == 0, log.read_text()[-3000:]
        assert emulator.wait_idle()
        postings = postings_by_invoice(emulator)

    assert postings == {(i, k): 1 for i in ids for k in ("debtor", "creditor")}
    with db() as session:
        rows = session.scalars(select(Delivery)).all()
    engine.dispose()
    assert len(rows) == 2 * INVOICES and {r.state for r in rows} == {"delivered"}
    ledger = embedded_ledger(ledger_dir)
    try:
        for invoice_id in ids:
            invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})],
                                                 as_org=PROVIDER))
            assert invoice["status"] == "POSTED"
            assert {r["target"] for r in invoice["erp_refs"]} == {"provider", "customer"}
    finally:
        ledger.close()


UBL_INVOICES = 120


def test_ubl_drop_killed_mid_run_leaves_each_e_invoice_exactly_once(tmp_path: Path,
                                                                     database_url: str) -> None:
    """The e-invoice drop under kill -9: the provider's receivable goes to SAP, the customer's e-invoice to
    an access point's folder. After two kills and a restart every invoice is one complete, parseable file
    (a kill between temp write and rename leaves only a hidden `.partial-` file, which no access point
    picks up) and one SAP posting, and both are recorded on the ledger."""
    from lxml import etree

    ledger_dir = tmp_path / "ledger"
    drop = tmp_path / "drop"
    ledger = embedded_ledger(ledger_dir)
    ids = issue_invoices(ledger, UBL_INVOICES, contract_id="ctr-ubl-1",
                         erp={"provider": "sap-soap", "customer": "ubl-drop"})
    ledger.close()
    log = tmp_path / "worker.log"

    def dropped() -> list[Path]:
        return [p for p in drop.rglob("*.xml") if not p.name.startswith(".")] if drop.exists() else []

    with SapSoapEmulator() as emulator:
        emulator.faults.configure(FaultPlan(probability=0.4, kinds=("slow",), seed=11, slow_seconds=0.05))
        config = {
            "ledger_dir": str(ledger_dir), "database_url": database_url,
            "connectors": {"sap-soap": sap_settings(emulator, wsdl=str(WSDL_PATH), timeout=2.0),
                           "ubl-drop": {"directory": str(drop)}},
            "options": {"concurrency": 2, "batch": 4, "claim_seconds": 1.0, "max_attempts": 20,
                        "backoff_base": 0.01, "backoff_cap": 0.05, "poll_seconds": 0.01},
        }
        kills = []
        for threshold in (10, 70):
            worker = start_worker(config, log)
            assert wait_for(lambda t=threshold: len(dropped()) >= t), log.read_text()[-3000:]
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(timeout=30) == -signal.SIGKILL
            kills.append(len(dropped()))
        assert kills[-1] < UBL_INVOICES, "the worker finished before it was killed: the test proves nothing"
        worker = start_worker(config, log)
        assert worker.wait(timeout=300) == 0, log.read_text()[-3000:]
        assert emulator.wait_idle()
        postings = postings_by_invoice(emulator)

    assert postings == {(i, "debtor"): 1 for i in ids}
    files = dropped()
    assert sorted(p.stem for p in files) == sorted(ids)  # each e-invoice once, none missing
    cbc_id = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}ID"
    for path in files:
        root = etree.fromstring(path.read_bytes())  # complete: a half-written file would not parse
        assert root.findtext(cbc_id) == path.stem
    ledger = embedded_ledger(ledger_dir)
    try:
        for invoice_id in ids:
            invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})],
                                                 as_org=PROVIDER))
            assert {(r["target"], r["system"]) for r in invoice["erp_refs"]} == {
                ("provider", "sap-soap"), ("customer", "ubl-drop")}
    finally:
        ledger.close()
