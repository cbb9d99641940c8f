"""VAT ids in party master data are checked with python-stdnum (format and check digits) before an e-invoice
or a SEPA mandate uses them (ADR 0050): a wrong one is `409 party_data_invalid` and nothing is produced."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from connectors.base import ConnectorConfig, ConnectorConfigError, Delivery, InvoiceDocument
from connectors.ubl import UblDropConnector, build_ubl
from connectors.vat import PartyDataInvalid, vat_id_problem
from hub.bank.mandate_router import collector
from tests.helpers.api import MASTER_DATA, auth
from tests.helpers.bank import Story
from tests.integration.test_ubl_documents import BUYER, SELLER
from tests.integration.test_ubl_drop import CONTRACT, INVOICE

pytestmark = pytest.mark.integration

GOOD = ["DE123456788", "de 123 456 788", "FR40303265045", "IT12345670017", "ATU13585627", "EL094259216",
        "GB980780684", "CHE-116.281.710 MWST", "NO974760673MVA"]
BAD = {"DE123456789": "check digit", "FR12345678901": "check digit", "IT12345678901": "",
       "DE12345678": "length", "12345678": "prefix", "US123456789": "no VAT id check", "XX1234": "no VAT",
       "DE12345678X": "", "' OR 1=1 --": "prefix"}


@pytest.mark.parametrize("vat_id", GOOD)
def test_valid_vat_ids_pass(vat_id: str) -> None:
    assert vat_id_problem(vat_id) is None


@pytest.mark.parametrize(("vat_id", "why"), sorted(BAD.items()))
def test_wrong_vat_ids_are_named(vat_id: str, why: str) -> None:
    problem = vat_id_problem(vat_id)
    assert problem is not None and why.lower() in problem.lower(), problem


def test_the_e_invoice_is_not_built_with_a_wrong_vat_id() -> None:
    for seller, buyer in ((dataclasses.replace(SELLER, vat_id="DE123456789"), BUYER),
                          (SELLER, dataclasses.replace(BUYER, vat_id="DE987654321"))):
        with pytest.raises(PartyDataInvalid) as refused:
            build_ubl(InvoiceDocument(invoice=INVOICE, contract=CONTRACT, seller=seller, buyer=buyer))
        assert refused.value.code == "party_data_invalid"
        assert refused.value.problems and "vat_id" in refused.value.problems[0]
    assert build_ubl(InvoiceDocument(invoice=INVOICE, contract=CONTRACT, seller=SELLER, buyer=BUYER))


def test_the_ubl_drop_dead_letters_a_wrong_vat_id_and_drops_nothing(tmp_path: Path) -> None:
    conn = UblDropConnector(ConnectorConfig(name="ubl-drop", target="customer",
                                            settings={"directory": str(tmp_path / "drop")}))
    bad = InvoiceDocument(invoice=INVOICE, contract=CONTRACT, seller=SELLER,
                          buyer=dataclasses.replace(BUYER, vat_id="DE987654321"))
    with pytest.raises(ConnectorConfigError) as info:  # the dispatcher dead-letters it with this code
        conn.deliver(bad, Delivery(id="dl-vat", message_uuid="6f1c0a52-7d0e-4c55-9b1e-2f3a4b5c6d7e",
                                  invoice_id=INVOICE["id"], target="customer"))
    assert info.value.code == "party_data_invalid"
    assert [p for p in (tmp_path / "drop").rglob("*") if p.is_file()] == []


BAD_CUSTOMER = {**MASTER_DATA, "CustomerMSP": {**MASTER_DATA["CustomerMSP"], "vat_id": "DE987654321"}}
BAD_PROVIDER = {**MASTER_DATA, "ProviderMSP": {**MASTER_DATA["ProviderMSP"], "vat_id": "DE123456789",
                                               "erp_ids": {"iban": "DE89370400440532013000",
                                                           "sepa_creditor_id": "DE98ZZZ09999999999"}}}
MANDATE = {"debtor_org": "CustomerMSP", "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
           "mandate_id": "MNDT-VAT-1", "signed_on": "2026-10-01", "scheme": "CORE"}


@pytest.mark.parametrize("story", [{"parties": BAD_CUSTOMER}], indirect=True)
def test_api_refuses_ubl_and_mandate_with_a_wrong_vat_id(story: Story) -> None:
    invoice = story.invoice()
    ubl = story.client.get(f"/v1/invoices/{invoice['id']}/ubl", headers=auth("tok-customer"))
    assert (ubl.status_code, ubl.json()["code"]) == (409, "party_data_invalid"), ubl.text
    assert ubl.headers["content-type"].startswith("application/problem+json")
    assert ubl.json()["invalid"] == ["parties.CustomerMSP.vat_id 'DE987654321': The number's checksum or "
                                     "check digit is invalid."]
    put = story.client.put(f"/v1/contracts/{invoice['contract_id']}/mandate", json=MANDATE,
                           headers=auth("tok-provider"))
    assert (put.status_code, put.json()["code"]) == (409, "party_data_invalid"), put.text
    got = story.client.get(f"/v1/contracts/{invoice['contract_id']}/mandate", headers=auth("tok-provider"))
    assert (got.status_code, got.json()["code"]) == (404, "no_mandate")  # nothing stored


@pytest.mark.parametrize("story", [{"parties": BAD_PROVIDER}], indirect=True)
def test_no_pain008_is_written_for_a_creditor_with_a_wrong_vat_id(story: Story) -> None:
    from hub.bank.models import SepaMandate
    from hub.bank.sepa import validate_mandate

    invoice = story.invoice()
    services = story.client.app.state.services
    path = f"/v1/contracts/{invoice['contract_id']}"
    contract = story.client.get(path, headers=auth("tok-provider")).json()
    with services.db.begin() as session:  # a mandate stored before the master data went wrong
        session.add(SepaMandate(**validate_mandate(MANDATE, contract, dt.date(2026, 12, 1))))
    sepa = collector(services)
    with pytest.raises(Exception) as refused:
        sepa.run_once()
    assert getattr(refused.value, "code", None) == "party_data_invalid"
    assert not sepa.directory.exists() or list(sepa.directory.glob("*.xml")) == []
