"""SEPA direct debit on the embedded ledger: a mandate on the contract (validated), one pain.008 per issued
invoice in the drop folder (valid against the XSD sepaxml ships, RF as structured remittance information,
exactly once), the camt.054 credit for it settles the invoice, its return reopens it with an alert."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from chaincode import creditor_ref
from hub.bank.mandate_router import collector
from hub.bank.sepa import schema_path
from tests.helpers.api import MASTER_DATA, auth
from tests.helpers.bank import Story
from tests.helpers.camt import E, camt

pytestmark = pytest.mark.integration
PARTIES = {**MASTER_DATA, "ProviderMSP": {**MASTER_DATA["ProviderMSP"], "erp_ids": {
    "iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "sepa_creditor_id": "DE98ZZZ09999999999"}}}
WITH_CREDITOR = pytest.mark.parametrize("story", [{"parties": PARTIES}], indirect=True)
MANDATE = {"debtor_org": "CustomerMSP", "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
           "bic": "BYLADEM1001", "mandate_id": "MNDT-2026-001", "signed_on": "2026-10-01", "scheme": "CORE"}
P = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.08"


def _put(story: Story, contract_id: str, body: dict, token: str = "tok-provider"):
    return story.client.put(f"/v1/contracts/{contract_id}/mandate", json=body, headers=auth(token))


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"iban": "DE89370400440532013001"}, 422, "invalid_iban"),  # wrong check digits
    ({"iban": "XX00"}, 422, "invalid_iban"),
    ({"bic": "NOTABIC"}, 422, "invalid_bic"),
    ({"mandate_id": "MNDT_2026#1"}, 422, "invalid_mandate_id"),  # outside the SEPA character set
    ({"signed_on": "2999-01-01"}, 422, "invalid_mandate_date"),
    ({"signed_on": "yesterday"}, 422, "invalid_mandate_date"),
    ({"scheme": "COR1"}, 422, "invalid_scheme"),
    ({"debtor_org": "OtherMSP"}, 409, "mandate_debtor_mismatch"),  # the customer is another org
])
def test_bad_mandates_are_refused_and_nothing_is_stored(story: Story, change: dict, status: int,
                                                       code: str) -> None:
    invoice = story.invoice()
    refused = _put(story, invoice["contract_id"], {**MANDATE, **change})
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    got = story.client.get(f"/v1/contracts/{invoice['contract_id']}/mandate", headers=auth("tok-customer"))
    assert (got.status_code, got.json()["code"]) == (404, "no_mandate")


def test_only_the_contracts_provider_puts_a_mandate(story: Story) -> None:
    invoice = story.invoice()
    assert _put(story, invoice["contract_id"], MANDATE, "tok-customer").status_code == 403
    other = _put(story, invoice["contract_id"], MANDATE, "tok-other-provider")
    assert (other.status_code, other.json()["code"]) == (404, "unknown_contract")


@WITH_CREDITOR
def test_pain008_once_per_invoice_then_camt054_settles_and_a_return_reopens(story: Story) -> None:
    invoice = story.invoice()
    put = _put(story, invoice["contract_id"], MANDATE)
    assert put.status_code == 200, put.text
    assert put.json()["iban"] == "DE02120300000000202051"
    sepa = collector(story.client.app.state.services)
    assert sepa.run_once() == [invoice["id"]]
    (path,) = list(sepa.directory.glob("*.pain008.xml"))
    assert path.name == f"{invoice['id']}.pain008.xml"
    first = path.read_bytes()
    doc = etree.fromstring(first)
    schema = etree.XMLSchema(etree.parse(str(schema_path())))
    assert schema.validate(doc), schema.error_log  # the pain.008 schema sepaxml ships
    ns = {"p": P}
    rf = creditor_ref.for_invoice(invoice["id"])
    tx = doc.find(".//p:DrctDbtTxInf", ns)
    assert tx.findtext("p:InstdAmt", namespaces=ns) == invoice["total"]
    assert tx.findtext("p:DrctDbtTx/p:MndtRltdInf/p:MndtId", namespaces=ns) == "MNDT-2026-001"
    assert tx.findtext("p:RmtInf/p:Strd/p:CdtrRefInf/p:Ref", namespaces=ns) == rf
    assert tx.find("p:RmtInf/p:Ustrd", ns) is None
    assert tx.findtext("p:PmtId/p:EndToEndId", namespaces=ns) == rf
    assert doc.findtext(".//p:PmtTpInf/p:SeqTp", namespaces=ns) == "FRST"
    assert doc.findtext(".//p:PmtTpInf/p:LclInstrm/p:Cd", namespaces=ns) == "CORE"
    # exactly once: a second run (or a restarted hub) writes nothing, the file is untouched
    assert sepa.run_once() == []
    assert path.read_bytes() == first and len(list(sepa.directory.iterdir())) == 1
    # the bank credits the collection (camt.054, EndToEndId = RF): the invoice is settled on the ledger
    credit = story.send(camt([E("SDD-1", invoice["total"], rf=rf, e2e=rf)], msg_id="N-1")).json()
    assert [r["status"] for r in credit["recorded"]] == ["SETTLED"]
    # settled invoices are not collected again
    assert sepa.run_once() == []
    # the debtor's bank returns it (MD06, refund request): the invoice reopens, both parties are alerted
    back = story.send(camt([E("SDD-1-R", invoice["total"], credit=False, reversal=True, reason="MD06",
                               e2e=rf)], msg_id="N-2")).json()
    assert [(r["reason"], r["status"]) for r in back["reversed"]] == [("MD06", "POSTED")]
    for token in ("tok-provider", "tok-customer"):
        alerts = story.client.get(f"/v1/alerts?contract={invoice['contract_id']}", headers=auth(token))
        assert [a["kind"] for a in alerts.json()["alerts"]] == ["payment_returned"]


def test_a_collection_file_is_written_whole_and_never_overwritten(tmp_path: Path) -> None:
    from hub.bank import sepa as sepa_module

    drop = tmp_path / "drop"
    drop.mkdir()
    assert sepa_module._write_once(drop / "a.xml", b"one") is True
    assert sepa_module._write_once(drop / "a.xml", b"two") is False  # never overwritten
    assert (drop / "a.xml").read_bytes() == b"one"
    assert [p.name for p in drop.iterdir()] == ["a.xml"]  # no partial file left behind
