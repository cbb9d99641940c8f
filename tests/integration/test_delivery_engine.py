"""The delivery engine on the real embedded ledger + contract, the SAP emulator over HTTP, and SQLite or
PostgreSQL: outbox creation from InvoiceIssued, delivery and write-back, lookup after unclear outcomes,
dead letters, the circuit breaker, ledger failures after posting, concurrent dispatchers, reconciliation."""

from __future__ import annotations

import datetime as dt
import json
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from connectors.emulators.sap_soap import WSDL_PATH, SapSoapEmulator
from hub.delivery.consumer import CONSUMER
from hub.delivery.dispatcher import DeliveryOptions
from hub.delivery.models import Delivery, DeliveryAttempt
from hub.ledger.base import LedgerUnavailable
from hub.store.models import EventCheckpoint
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import (
    FAST,
    delivery_service,
    hub_settings_for,
    issue_invoices,
    postings_by_invoice,
)

pytestmark = pytest.mark.integration


def invoice(ledger, invoice_id: str) -> dict:
    return json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER))


def service(ledger, tmp_path, emulator, database_url, options=FAST, **connector):
    return delivery_service(ledger, hub_settings_for(tmp_path, emulator, database_url, **connector), options)


def test_invoices_are_delivered_to_both_targets_and_recorded_on_the_ledger(ledger, tmp_path, emulator,
                                                                          database_url) -> None:
    ids = issue_invoices(ledger, 3)
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    rows = svc.list()
    expected = {(i, t) for i in ids for t in ("provider", "customer")}
    assert {(r["invoice_id"], r["target"]) for r in rows} == expected
    assert all(r["state"] == "delivered" and r["ledger_tx_id"] for r in rows)
    assert all(r["id"] == f"dlv-{r['invoice_id']}-{r['target']}" for r in rows)
    assert postings_by_invoice(emulator) == {(i, k): 1 for i in ids for k in ("debtor", "creditor")}
    docs = {(p["item_text"], p["partner_kind"]): p["accounting_document"] for p in emulator.postings()}
    for invoice_id in ids:
        on_ledger = invoice(ledger, invoice_id)
        assert on_ledger["status"] == "POSTED"
        refs = {r["target"]: r for r in on_ledger["erp_refs"]}
        assert refs["provider"]["document_id"] == docs[(invoice_id, "debtor")]
        assert refs["customer"]["document_id"] == docs[(invoice_id, "creditor")]
        assert refs["provider"]["delivery_id"] == f"dlv-{invoice_id}-provider"
    # the message UUID sent to SAP is the stored one
    sent = {p["message_uuid"] for p in emulator.postings()}
    assert sent == {r["message_uuid"] for r in rows}
    svc.dispatcher.close()


def test_replayed_events_create_no_second_row(ledger, tmp_path, emulator, database_url) -> None:
    issue_invoices(ledger, 2)
    svc = service(ledger, tmp_path, emulator, database_url)
    assert svc.consume_events() == 4
    assert svc.consume_events() == 0
    with svc.db.begin() as session:  # forget the checkpoint: every event is seen again
        session.delete(session.get(EventCheckpoint, CONSUMER))
    assert svc.consume_events() == 0
    with svc.db() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 4
    svc.dispatcher.close()


def test_crash_between_rows_and_checkpoint_loses_and_duplicates_nothing(ledger, tmp_path, emulator,
                                                                        database_url, monkeypatch) -> None:
    issue_invoices(ledger, 2)
    svc = service(ledger, tmp_path, emulator, database_url)
    import hub.delivery.consumer as consumer_module

    real = consumer_module.create_deliveries
    calls = {"n": 0}

    def crashing(session, invoice, erp, now):
        created = real(session, invoice, erp, now)
        calls["n"] += 1
        if calls["n"] == 2:  # the second invoice: rows written in the transaction, then the process "dies"
            raise RuntimeError("crash before the checkpoint commits")
        return created

    monkeypatch.setattr(consumer_module, "create_deliveries", crashing)
    with pytest.raises(RuntimeError):
        svc.consume_events()
    monkeypatch.setattr(consumer_module, "create_deliveries", real)
    with svc.db() as session:
        first = session.scalar(select(func.count()).select_from(Delivery))
    assert first == 2  # the first invoice's rows committed with their checkpoint, the second's rolled back
    svc.consume_events()
    with svc.db() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 4
    svc.dispatcher.close()


def test_unclear_outcome_is_followed_by_lookup_not_a_second_posting(ledger, tmp_path, emulator,
                                                                    database_url) -> None:
    [invoice_id] = issue_invoices(ledger, 1, erp={"provider": "sap-soap"})
    emulator.faults.queue("drop_after_post")
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    [row] = svc.list()
    assert row["state"] == "delivered"
    assert postings_by_invoice(emulator) == {(invoice_id, "debtor"): 1}
    history = svc.get(row["id"])["history"]
    assert [(h["action"], h["outcome"]) for h in history] == [
        ("deliver", "erp_unclear_outcome"), ("lookup", "ok"), ("ledger", "ok")]
    svc.dispatcher.close()


def test_business_rejection_dead_letters_at_once_then_operator_retry_delivers(ledger, tmp_path, emulator,
                                                                             database_url) -> None:
    [invoice_id] = issue_invoices(ledger, 1, erp={"provider": "sap-soap"})
    emulator.faults.queue("reject")
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    [row] = svc.list()
    assert row["state"] == "dead_letter" and row["attempts"] == 1
    assert row["last_error"]["code"] == "erp_rejected"
    assert any("Posting period is not open" in m for m in row["erp_messages"])
    assert emulator.postings() == []
    assert invoice(ledger, invoice_id)["status"] == "ISSUED"
    assert svc.retry("dlv-unknown") is None
    requeued = svc.retry(row["id"])
    assert requeued["state"] == "pending" and requeued["attempts"] == 0
    assert svc.retry(row["id"]) is None  # not dead-lettered any more
    svc.run_until_idle()
    [row] = svc.list()
    assert row["state"] == "delivered"
    assert row["message_uuid"] == emulator.postings()[0]["message_uuid"]
    assert invoice(ledger, invoice_id)["status"] == "POSTED"
    svc.dispatcher.close()


def test_max_attempts_dead_letters_with_the_last_error_and_circuit_breaker_spares_attempts(
        ledger, tmp_path, database_url) -> None:
    issue_invoices(ledger, 3, erp={"provider": "sap-soap"})
    with SapSoapEmulator() as emu:
        settings = hub_settings_for(tmp_path, emu, database_url, wsdl=str(WSDL_PATH))
    # the emulator is gone: connection refused on every attempt
    options = DeliveryOptions(concurrency=1, batch=1, max_attempts=3, backoff_base=0.0, backoff_cap=0.0,
                              breaker_threshold=2, breaker_open_seconds=3600, poll_seconds=0.01)
    svc = delivery_service(ledger, settings, options)
    svc.consume_events()
    for _ in range(20):
        svc.dispatch_once()
    rows = svc.list()
    # two failures opened the breaker; after that nothing was attempted, only postponed
    assert sum(r["attempts"] for r in rows) == 2
    assert all(r["state"] == "pending" for r in rows)
    assert svc.dispatcher.breaker.state(next(iter(svc.dispatcher.breaker._states))) == "open"
    # the postponed rows wait for the breaker's reopen time (an hour); bring it and them forward
    svc.dispatcher.breaker.open_for = svc.dispatcher.breaker.open_for * 0
    with svc.db.begin() as session:
        session.execute(update(Delivery).values(next_attempt_at=dt.datetime.now(dt.UTC)))
    svc.run_until_idle()
    rows = svc.list()
    assert all(r["state"] == "dead_letter" for r in rows)
    assert all(r["attempts"] == 3 and r["last_error"]["code"] == "erp_unavailable" for r in rows)
    assert all("gave up after 3 attempts" in r["last_error"]["message"] for r in rows)
    svc.dispatcher.close()


def test_ledger_failure_after_erp_posting_retries_the_ledger_only(ledger, tmp_path, emulator,
                                                                 database_url) -> None:
    [invoice_id] = issue_invoices(ledger, 1, erp={"provider": "sap-soap"})
    ledger.fail_before.extend([LedgerUnavailable("peer down"), LedgerUnavailable("peer down")])
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.consume_events()
    svc.dispatch_once()
    [row] = svc.list()
    assert row["state"] == "posted" and row["erp_ref"]["document_id"]
    svc.run_until_idle()
    [row] = svc.list()
    assert row["state"] == "delivered"
    assert len(emulator.postings()) == 1 and len(emulator.state.requests) == 1
    assert invoice(ledger, invoice_id)["erp_refs"][0]["document_id"] == row["erp_ref"]["document_id"]
    svc.dispatcher.close()


def test_two_dispatchers_on_one_outbox_never_post_twice(ledger, tmp_path, emulator, database_url) -> None:
    ids = issue_invoices(ledger, 12)
    emulator.faults.apply({"probability": 0.3, "kinds": ["slow"], "seed": 3, "slow_seconds": 0.02})
    settings = hub_settings_for(tmp_path, emulator, database_url)
    a = delivery_service(ledger, settings, FAST, worker="a")
    b = delivery_service(ledger, settings, FAST, worker="b")
    a.consume_events()
    threads = [threading.Thread(target=s.run_until_idle) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert postings_by_invoice(emulator) == {(i, k): 1 for i in ids for k in ("debtor", "creditor")}
    assert len(emulator.state.requests) == 24  # no row was sent by both
    with a.db() as session:
        sends = session.execute(select(DeliveryAttempt.delivery_id, DeliveryAttempt.worker)
                                .where(DeliveryAttempt.action == "deliver")).all()
    assert sorted(d for d, _ in sends) == sorted({d for d, _ in sends}) and len(sends) == 24
    assert {w.split(":")[0] for _, w in sends} <= {"a", "b"}
    a.dispatcher.close()
    b.dispatcher.close()


def test_reconciliation_records_payments_once_partial_then_settled(ledger, tmp_path, emulator,
                                                                   database_url) -> None:
    [first, second] = issue_invoices(ledger, 2)
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    debtor = {p["item_text"]: p for p in emulator.postings() if p["partner_kind"] == "debtor"}
    creditor = {p["item_text"]: p for p in emulator.postings() if p["partner_kind"] == "creditor"}
    total = Decimal(invoice(ledger, first)["total"])
    key = lambda p: (p["company_code"], p["accounting_document"], p["fiscal_year"])  # noqa: E731
    emulator.state.pay(*key(debtor[first]), Decimal("100.00"))
    # the customer's AP side shows the payment too: it must not be counted a second time
    emulator.state.pay(*key(creditor[first]), Decimal("100.00"))
    report = svc.reconcile_once()
    assert report.payments_recorded == 1 and not report.errors
    on_ledger = invoice(ledger, first)
    assert on_ledger["status"] == "PARTIALLY_PAID" and on_ledger["paid"] == "100.00"
    assert on_ledger["payments"][0]["payment_id"].startswith("sap-soap:")
    assert svc.reconcile_once().payments_recorded == 0  # nothing new, nothing written
    emulator.state.pay(*key(debtor[first]), total - Decimal("100.00"))
    assert svc.reconcile_once().payments_recorded == 1
    assert invoice(ledger, first)["status"] == "SETTLED"
    assert invoice(ledger, second)["status"] == "POSTED"
    rows = {r["id"]: r for r in svc.list()}
    assert rows[f"dlv-{first}-provider"]["erp_state"] == "paid"
    svc.dispatcher.close()


def test_unknown_connector_is_dead_lettered_as_misconfigured(ledger, tmp_path, emulator,
                                                             database_url) -> None:
    [invoice_id] = issue_invoices(ledger, 1, erp={"provider": "sap-soap", "customer": "no-such-erp"})
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    rows = {r["target"]: r for r in svc.list()}
    assert rows["provider"]["state"] == "delivered"
    assert rows["customer"]["state"] == "dead_letter"
    assert rows["customer"]["last_error"]["code"] == "connector_misconfigured"
    assert "no-such-erp" in rows["customer"]["last_error"]["message"]
    assert invoice(ledger, invoice_id)["status"] == "POSTED"
    svc.dispatcher.close()


def test_erp_overpayment_is_reported_and_changes_nothing(ledger, tmp_path, emulator, database_url) -> None:
    [invoice_id] = issue_invoices(ledger, 1, erp={"provider": "sap-soap"})
    svc = service(ledger, tmp_path, emulator, database_url)
    svc.run_until_idle()
    [posting] = emulator.postings()
    key = (posting["company_code"], posting["accounting_document"], posting["fiscal_year"])
    emulator.state.pay(*key, Decimal(posting["amount"]) + Decimal("0.01"))
    before = invoice(ledger, invoice_id)
    report = svc.reconcile_once()
    assert report.payments_recorded == 0 and "overpayment" in report.errors[0]
    assert invoice(ledger, invoice_id) == before
    assert svc.list()[0]["erp_state"] is None  # not marked reconciled: it is looked at again next run
    svc.dispatcher.close()
