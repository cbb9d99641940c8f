"""Document signing fails loudly (ADR 0060): when the hub is configured to sign invoice documents and cannot
(a wrong HSM PIN on a real SoftHSM2 token, a disabled document key), the delivery is dead-lettered as
`document_signing_failed`, logged at ERROR, and no document reaches the ERP or the e-invoice drop unsigned.
When the key area keeps no document key for the invoice's provider, the document goes unsigned as before."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from hub.config import Settings
from hub.delivery.signing import CODE, DocumentSigningFailed, document_signing
from hub.keys import build_key_manager
from hub.keys.documents import verify_invoice_json, verify_xml
from hub.keys.softhsm import init_token
from tests.helpers import leakscan, softhsm
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import delivery_service, issue_invoices
from tests.helpers.erp import PARTIES

pytestmark = [pytest.mark.integration, pytest.mark.hsm]
DROP = "ubl-drop"


@pytest.fixture
def hsm(tmp_path_factory: pytest.TempPathFactory) -> softhsm.SoftHsmEnv:
    """The process's SoftHSM2 token (one per process: the library reads its configuration once)."""
    if not softhsm.softhsm_available():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    return softhsm._session_env(lambda: tmp_path_factory.mktemp("softhsm"))


def files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


def drop_settings(base: Settings, drop: Path) -> Settings:
    return base.updated(parties=PARTIES, connectors={DROP: {"directory": str(drop)}})


def test_a_wrong_hsm_pin_dead_letters_the_delivery_and_sends_nothing_unsigned(
        hsm: softhsm.SoftHsmEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a token of its own with a known PIN, so the wrong one is refused by SoftHSM itself (the session's
    # token is already logged in in this process, and PKCS#11 would not check a PIN again)
    label, right = f"docs-{secrets.token_hex(4)}", "r-" + secrets.token_hex(8)
    wrong = "w-" + secrets.token_hex(8)
    leakscan.remember(right)
    leakscan.remember(wrong)
    init_token(hsm.conf, label, right, hsm.module)
    drop = tmp_path / "drop"
    settings = drop_settings(Settings(data_dir=tmp_path / "hub", signer="pkcs11", pkcs11_module=hsm.module,
                                      pkcs11_token_label=label, pkcs11_pin=wrong), drop)
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        ids = issue_invoices(ledger, 2, contract_id="ctr-wrong-pin", erp={"provider": DROP, "customer": DROP})
        svc = delivery_service(ledger, settings)
        with caplog.at_level(logging.INFO, logger="ledgerhub.delivery"):
            svc.run_until_idle()
        svc.dispatcher.close()
        rows = svc.list()
        invoices = [json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": i})], as_org=PROVIDER))
                    for i in ids]
    finally:
        ledger.close()
    assert len(rows) == 4
    assert {(r["state"], r["last_error"]["code"], r["attempts"]) for r in rows} == {("dead_letter", CODE, 0)}
    assert all("hsm_pin_incorrect" in r["last_error"]["message"] for r in rows)
    assert files(drop) == []  # no e-invoice, signed or not, reached the drop
    assert all(not invoice.get("erp_refs") for invoice in invoices)  # nothing recorded as posted
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "not sent" in r.getMessage()]
    assert len(errors) == 4
    assert not [r for r in caplog.records if "not signed" in r.getMessage()]
    text = json.dumps(rows) + caplog.text
    assert right not in text and wrong not in text


def test_a_disabled_document_key_dead_letters_and_after_enabling_a_retry_delivers_it_signed(
        hsm: softhsm.SoftHsmEnv, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    settings = drop_settings(Settings(data_dir=tmp_path / "hub", signer="pkcs11", pkcs11_module=hsm.module,
                                      pkcs11_token_label=hsm.token_label, pkcs11_pin=hsm.pin), drop)
    manager = build_key_manager(settings)
    manager.disable(f"documents-{PROVIDER}")
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        (invoice_id,) = issue_invoices(ledger, 1, contract_id="ctr-key-off", erp={"provider": DROP})
        svc = delivery_service(ledger, settings)
        svc.run_until_idle()
        (dead,) = svc.list()
        assert (dead["state"], dead["last_error"]["code"]) == ("dead_letter", CODE)
        assert "key_disabled" in dead["last_error"]["message"]
        assert files(drop) == []
        manager.enable(f"documents-{PROVIDER}")  # the operator fixes it and retries the dead letter
        assert svc.retry(dead["id"]) is not None
        svc.run_until_idle()
        svc.dispatcher.close()
        (done,) = svc.list()
    finally:
        ledger.close()
    assert done["state"] == "delivered"
    assert verify_xml((drop / f"{invoice_id}.xml").read_bytes(),
                      certificate=manager.certificate(f"documents-{PROVIDER}"))


def test_signing_is_configured_per_provider_key_in_the_key_area(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The hub's own provider has a document key (created with the key area): signed. An invoice of a
    provider org the key area keeps no document key for: unsigned, as before, said at INFO."""
    settings = Settings(data_dir=tmp_path / "hub")  # software keys under the data dir
    invoice = {"id": "inv-1", "provider": PROVIDER, "customer": "CustomerMSP", "total": "1.00"}
    signature, sign = document_signing(settings, invoice)
    assert signature is not None and sign is not None
    certificate = build_key_manager(settings).certificate(f"documents-{PROVIDER}")
    assert verify_invoice_json(invoice, signature["jws"], certificate=certificate)
    with caplog.at_level(logging.INFO, logger="ledgerhub.delivery"):
        assert document_signing(settings, {**invoice, "provider": "ElsewhereMSP"}) == (None, None)
    assert "no documents-ElsewhereMSP key" in caplog.text


def test_an_unreadable_key_area_is_a_signing_failure_not_an_unsigned_document(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "hub")
    keys = tmp_path / "hub" / "keys"
    keys.mkdir(parents=True)
    (keys / "registry.json").write_text("{not json")  # a damaged key registry
    with pytest.raises(DocumentSigningFailed) as caught:
        document_signing(settings, {"id": "inv-1", "provider": PROVIDER})
    assert caught.value.code == CODE and "key area cannot be opened" in str(caught.value)
