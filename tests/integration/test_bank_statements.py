"""Bank statement import on the embedded ledger through the real HTTP API: RF matching, idempotency by the
bank's reference, partial and overpayments, the reconciliation queue, reversals and `payment_returned`,
and every refusal of a bad file (a stable code, nothing recorded)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chaincode import creditor_ref
from tests.helpers.api import auth
from tests.helpers.bank import Story
from tests.helpers.camt import E, camt

pytestmark = pytest.mark.integration


def _rf(invoice: dict[str, Any]) -> str:
    return creditor_ref.for_invoice(invoice["id"])


@pytest.mark.parametrize(("kind", "version"), [("054", "08"), ("053", "02"), ("053", "08"), ("054", "02")])
def test_credit_with_the_rf_settles_and_the_same_file_again_records_nothing(story: Story, kind: str,
                                                                          version: str) -> None:
    invoice = story.invoice()
    assert invoice["status"] == "POSTED" and invoice["payment_reference"] == _rf(invoice)
    # the payer typed it in groups of four, lower case: still the same reference
    printed = creditor_ref.printed(_rf(invoice)).lower()
    statement = camt([E("BANK-1", invoice["total"], rf=printed, debtor="Klinikum Mitte")],
                     kind=kind, version=version)
    first = story.send(statement)
    assert first.status_code == 200, first.text
    report = first.json()
    assert [(r["invoice_id"], r["amount"], r["status"]) for r in report["recorded"]] == [
        (invoice["id"], invoice["total"], "SETTLED")]
    settled = story.get(invoice["id"])
    assert settled["status"] == "SETTLED" and settled["paid"] == invoice["total"]
    assert [p["payment_id"] for p in settled["payments"]] == ["bank:DE89370400440532013000:BANK-1"]
    again = story.send(statement)
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["recorded"] == []
    assert story.get(invoice["id"]) == settled  # nothing recorded twice
    assert story.queue() == []


def test_partial_then_rest_then_overpayment_recorded(story: Story) -> None:
    invoice = story.invoice()
    total = Decimal(invoice["total"])
    part = story.send(camt([E("P-1", "100.00", rf=_rf(invoice))], msg_id="S-1")).json()
    assert part["recorded"][0]["status"] == "PARTIALLY_PAID"
    assert story.get(invoice["id"])["paid"] == "100.00"
    rest = total - Decimal("100.00") + Decimal("25.50")  # 25.50 too much
    over = story.send(camt([E("P-2", f"{rest:.2f}", rf=_rf(invoice))], msg_id="S-2")).json()
    assert (over["recorded"][0]["status"], over["recorded"][0]["overpaid"]) == ("SETTLED", "25.50")
    final = story.get(invoice["id"])
    paid = f"{total + Decimal('25.50'):.2f}"
    assert (final["status"], final["paid"], final["overpaid"]) == ("SETTLED", paid, "25.50")
    # a further credit for a settled invoice is not refused silently: it waits in the queue
    late = story.send(camt([E("P-3", "10.00", rf=_rf(invoice))], msg_id="S-3")).json()
    assert [(q["state"], q["reason"]) for q in late["queued"]] == [("unmatched", "invoice_settled")]


def test_unmatched_and_fallback_entries_wait_for_the_provider(story: Story) -> None:
    invoice = story.invoice()
    wrong = _rf(invoice)[:-1] + ("0" if _rf(invoice)[-1] != "0" else "1")  # a typo: bad check digits
    report = story.send(camt([
        E("U-1", "12.00"),  # no reference at all
        E("U-2", invoice["total"], rf=wrong, debtor="KLINIKUM MITTE"),  # fits the invoice by amount + name
        E("U-3", "7.00", rf=creditor_ref.make("NOSUCHINVOICE")),  # valid RF, no invoice
    ])).json()
    assert report["recorded"] == []
    queued = {q["bank_reference"].split(":")[1]: q for q in story.queue()}
    assert {k: (v["state"], v["reason"]) for k, v in queued.items()} == {
        "U-1": ("unmatched", "no_reference"), "U-2": ("held", "confirm_match"),
        "U-3": ("unmatched", "unknown_reference")}
    assert queued["U-2"]["candidate_invoice_id"] == invoice["id"]
    assert story.get(invoice["id"])["status"] == "POSTED"  # a held match records nothing by itself
    # the queue is the provider org's own: others see nothing, customers may not look
    assert story.queue("tok-other-provider") == []
    assert story.client.get("/v1/bank-statements/queue", headers=auth("tok-customer")).status_code == 403
    # confirming the held match records the payment; the entry leaves the queue
    confirmed = story.client.post(f"/v1/bank-statements/entries/{queued['U-2']['id']}/resolve", json={},
                                  headers=auth("tok-provider"))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "recorded"
    assert story.get(invoice["id"])["status"] == "SETTLED"
    # dismissing one; resolving one twice is refused; unknown ids and other orgs' entries are 404
    dismissed = story.client.post(f"/v1/bank-statements/entries/{queued['U-1']['id']}/resolve",
                                  json={"dismiss": True, "note": "rent"}, headers=auth("tok-operator"))
    assert dismissed.json()["state"] == "dismissed"
    twice = story.client.post(f"/v1/bank-statements/entries/{queued['U-1']['id']}/resolve",
                              json={"dismiss": True}, headers=auth("tok-operator"))
    assert (twice.status_code, twice.json()["code"]) == (409, "bank_entry_not_open")
    other = story.client.post(f"/v1/bank-statements/entries/{queued['U-3']['id']}/resolve",
                              json={"dismiss": True}, headers=auth("tok-other-operator"))
    assert (other.status_code, other.json()["code"]) == (404, "unknown_bank_entry")
    no_invoice = story.client.post(f"/v1/bank-statements/entries/{queued['U-3']['id']}/resolve",
                                   json={"invoice_id": "inv-nope"}, headers=auth("tok-provider"))
    assert (no_invoice.status_code, no_invoice.json()["code"]) == (404, "unknown_invoice")
    assert [q["bank_reference"].split(":")[1] for q in story.queue()] == ["U-3"]


def test_credit_before_the_erp_posting_waits_and_is_recorded_by_a_later_import(story: Story) -> None:
    invoice = story.invoice(posted=False)
    first = story.send(camt([E("EARLY-1", invoice["total"], rf=_rf(invoice))], msg_id="S-1")).json()
    assert [(q["state"], q["reason"]) for q in first["queued"]] == [("pending", "invoice_not_posted")]
    story.ledger.submit("RecordErpPosting", [json.dumps(
        {"invoice_id": invoice["id"], "target": "provider", "system": "sap-soap", "document_id": "5100",
         "delivery_id": "dl-x"})], as_org="ProviderMSP")
    later = story.send(camt([E("OTHER", "1.00")], msg_id="S-2")).json()
    assert [r["invoice_id"] for r in later["recorded"]] == [invoice["id"]]
    assert story.get(invoice["id"])["status"] == "SETTLED"


def test_returned_direct_debit_reopens_the_invoice_and_raises_payment_returned(story: Story) -> None:
    invoice = story.invoice()
    story.send(camt([E("DD-1", invoice["total"], rf=_rf(invoice), e2e="E2E-77")], msg_id="S-1"))
    assert story.get(invoice["id"])["status"] == "SETTLED"
    returned = camt([E("DD-1-R", invoice["total"], credit=False, reversal=True, reason="AM04", e2e="E2E-77",
                       rf=_rf(invoice))], msg_id="S-2")
    report = story.send(returned).json()
    assert [(r["invoice_id"], r["reason"], r["status"]) for r in report["reversed"]] == [
        (invoice["id"], "AM04", "POSTED")]
    reopened = story.get(invoice["id"])
    assert (reopened["status"], reopened["paid"]) == ("POSTED", "0.00")
    assert reopened["payments"][0]["reversal"]["reason"] == "AM04"
    alerts = story.client.get(f"/v1/alerts?contract={invoice['contract_id']}", headers=auth("tok-provider"))
    assert alerts.status_code == 200, alerts.text
    kinds = [a["kind"] for a in alerts.json()["alerts"]]
    assert kinds.count("payment_returned") == 1
    # the same return again: nothing reversed twice, no second alert
    assert story.send(returned).json()["duplicates"] == 1
    again = story.client.get(f"/v1/alerts?contract={invoice['contract_id']}", headers=auth("tok-provider"))
    assert [a["kind"] for a in again.json()["alerts"]].count("payment_returned") == 1
    # a return with nothing to return waits in the queue
    orphan = story.send(camt([E("DD-9-R", "5.00", credit=False, reversal=True, reason="MD06")],
                             msg_id="S-3")).json()
    assert [(q["state"], q["reason"]) for q in orphan["queued"]] == [
        ("unmatched", "original_payment_not_found")]


def _bad(name: str) -> tuple[bytes, int, str]:
    good = camt([E("X-1", "10.00", rf=creditor_ref.make("ABC"))])
    cases = {
        "malformed": (good[:-40], 400, "malformed_xml"),
        "not_xml": (b"\x00\x01binary", 400, "malformed_xml"),
        "xxe": (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">&x;</Document>',
                400, "xml_dtd_forbidden"),
        "billion_laughs": (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
                           b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><d>&b;</d>',
                           400, "xml_dtd_forbidden"),
        "wrong_namespace": (good.replace(b"camt.054.001.08", b"camt.099.001.08"), 422,
                            "unsupported_statement"),
        "pain_not_camt": (good.replace(b"camt.054.001.08", b"pain.008.001.08"), 422, "unsupported_statement"),
        "unknown_currency": (good.replace(b'Ccy="EUR"', b'Ccy="XYZ"'), 422, "unknown_currency"),
        "too_many_decimals": (good.replace(b">10.00<", b">10.001<"), 422, "invalid_amount"),
        "negative": (good.replace(b">10.00<", b">-10.00<"), 422, "invalid_amount"),
        "account_currency": (camt([E("X-1", "10.00", currency="USD")]), 422, "currency_mismatch"),
        "no_bank_reference": (good.replace(b"<AcctSvcrRef>X-1</AcctSvcrRef>", b""), 422, "invalid_statement"),
        "bad_indicator": (good.replace(b"<CdtDbtInd>CRDT</CdtDbtInd><Sts>", b"<CdtDbtInd>X</CdtDbtInd><Sts>"),
                          422, "invalid_statement"),
        "oversized": (b"<x>" + b" " * 1_100_000 + b"</x>", 413, "payload_too_large"),
    }
    return cases[name]


@pytest.mark.parametrize("name", ["malformed", "not_xml", "xxe", "billion_laughs", "wrong_namespace",
                                  "pain_not_camt", "unknown_currency", "too_many_decimals", "negative",
                                  "account_currency", "no_bank_reference", "bad_indicator", "oversized"])
def test_bad_files_are_refused_with_a_stable_code_and_change_nothing(story: Story, name: str) -> None:
    invoice = story.invoice()
    data, status, code = _bad(name)
    if name != "oversized":  # put a real payment for the invoice in the same (bad) file
        data = data.replace(creditor_ref.make("ABC").encode(), _rf(invoice).encode())
    answer = story.send(data)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert story.get(invoice["id"])["status"] == "POSTED"
    assert story.queue() == []


def test_only_operators_import_and_only_xml(story: Story) -> None:
    data = camt([E("X-1", "10.00")])
    for token in ("tok-provider", "tok-customer", "tok-auditor", "tok-device"):
        assert story.send(data, token).status_code == 403
    wrong_type = story.send(data, headers={"Content-Type": "text/plain"})
    assert (wrong_type.status_code, wrong_type.json()["code"]) == (415, "unsupported_media_type")


def test_same_bank_reference_with_other_content_is_refused_whole(story: Story) -> None:
    invoice = story.invoice()
    story.send(camt([E("C-1", "10.00", rf=_rf(invoice))], msg_id="S-1"))
    before = story.get(invoice["id"])
    clash = story.send(camt([E("C-2", "1.00", rf=_rf(invoice)), E("C-1", "11.00", rf=_rf(invoice))],
                            msg_id="S-2"))
    assert (clash.status_code, clash.json()["code"]) == (409, "bank_entry_conflict")
    assert story.get(invoice["id"]) == before  # C-2 was not recorded either
