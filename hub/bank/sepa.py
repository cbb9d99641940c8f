"""SEPA direct debit: the customer's mandate on a contract, and one pain.008 collection file per issued
invoice in a drop folder (the provider's bank upload picks it up), exactly once, like the UBL drop.

- A mandate (`PUT /v1/contracts/{id}/mandate`, the contract's provider) names the debtor org, which must be
  the contract's customer; its IBAN and BIC are checked with `schwifty`, the mandate id against the SEPA
  character set (max 35), the signature date (not in the future) and the scheme (CORE or B2B).
- The file is built with `sepaxml` (pain.008.001.08), then its remittance information is made structured:
  `RmtInf/Strd/CdtrRefInf` with the invoice's ISO 11649 reference (the EPC rules allow Ustrd or Strd, not
  both), and it is validated against the pain.008 XSD that `sepaxml` ships. The end-to-end id is the RF
  reference too, so a return (camt.054) names the invoice by itself.
- Exactly once: the file `{invoice_id}.pain008.xml` is written under a temporary name, fsynced and linked
  into place only if absent; a row in `sepa_collection` records it. A crash between the two is repaired by
  the next run (the file is there: only the row is added), never by a second file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chaincode import creditor_ref
from connectors.vat import PartyDataInvalid, check_parties
from hub.bank.models import SepaCollection, SepaMandate
from hub.billing.client import ContractClient
from hub.store.models import InvoiceView

SCHEMA = "pain.008.001.08"
_MANDATE_ID = re.compile(r"^[A-Za-z0-9+?/:().,' -]{1,35}$")
DEFAULT_DAYS = 14
COLLECTABLE = ("ISSUED", "POSTED")


class MandateError(Exception):
    def __init__(self, code: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


def validate_mandate(body: Mapping[str, Any], contract: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
    """The mandate as stored, or `MandateError` (invalid_iban, invalid_bic, invalid_mandate_id,
    invalid_mandate_date, invalid_scheme, mandate_debtor_mismatch, mandate_currency)."""
    import schwifty

    if body.get("debtor_org") != contract["customer"]:
        raise MandateError("mandate_debtor_mismatch",
                           f"the mandate's debtor {body.get('debtor_org')!r} is not the contract's customer "
                           f"{contract['customer']!r}", 409)
    if contract.get("currency") != "EUR":
        raise MandateError("mandate_currency", "SEPA direct debits are in EUR only", 409)
    try:
        iban = schwifty.IBAN(str(body.get("iban") or "")).compact
    except (ValueError, schwifty.exceptions.SchwiftyException) as exc:
        raise MandateError("invalid_iban", f"IBAN: {exc}") from None
    bic = body.get("bic")
    if bic is not None:
        try:
            bic = str(schwifty.BIC(str(bic)))
        except (ValueError, schwifty.exceptions.SchwiftyException) as exc:
            raise MandateError("invalid_bic", f"BIC: {exc}") from None
    mandate_id = str(body.get("mandate_id") or "")
    if not _MANDATE_ID.match(mandate_id):
        raise MandateError("invalid_mandate_id", "a mandate id is 1-35 characters of the SEPA character set")
    try:
        signed_on = dt.date.fromisoformat(str(body.get("signed_on")))
    except ValueError:
        raise MandateError("invalid_mandate_date", "signed_on is a date (YYYY-MM-DD)") from None
    if signed_on > today:
        raise MandateError("invalid_mandate_date", "a mandate cannot be signed in the future")
    scheme = body.get("scheme", "CORE")
    if scheme not in ("CORE", "B2B"):
        raise MandateError("invalid_scheme", "scheme is CORE or B2B")
    name = str(body.get("debtor_name") or "").strip()
    if not 1 <= len(name) <= 70:
        raise MandateError("invalid_argument", "debtor_name is 1-70 characters")
    return {"contract_id": contract["id"], "provider": contract["provider"],
            "debtor_org": contract["customer"], "debtor_name": name, "iban": iban, "bic": bic,
            "mandate_id": mandate_id, "signed_on": signed_on, "scheme": scheme}


def mandate_view(m: SepaMandate) -> dict[str, Any]:
    return {"contract_id": m.contract_id, "debtor_org": m.debtor_org, "debtor_name": m.debtor_name,
            "iban": m.iban, "bic": m.bic, "mandate_id": m.mandate_id, "signed_on": m.signed_on.isoformat(),
            "scheme": m.scheme}


def schema_path() -> Path:
    import sepaxml

    return Path(sepaxml.__file__).parent / "schemas" / f"{SCHEMA}.xsd"


def build_pain008(invoice: Mapping[str, Any], mandate: SepaMandate, creditor: Mapping[str, Any], *,
                  sequence: str, collection_date: dt.date, reference: str | None = None) -> bytes:
    """The pain.008 for one invoice, validated against sepaxml's XSD (`ValueError` if it does not).
    `reference`: another RF than the invoice's (a prepaid top-up collection quotes the contract's top-up
    reference, so the bank's credit for it funds the balance; ADR 0051)."""
    from sepaxml import SepaDD

    try:
        check_parties([(str(invoice["provider"]), creditor)])
    except PartyDataInvalid as exc:
        raise MandateError(exc.code, str(exc), 409) from None
    erp = creditor.get("erp_ids") or {}
    if not erp.get("iban") or not erp.get("sepa_creditor_id"):
        raise MandateError("party_data_incomplete",
                           "the provider's erp_ids need iban and sepa_creditor_id", 409)
    reference = reference or creditor_ref.for_invoice(str(invoice["id"]))
    config: dict[str, Any] = {"name": str(creditor.get("name") or invoice["provider"])[:70],
                              "IBAN": erp["iban"], "batch": False, "creditor_id": erp["sepa_creditor_id"],
                              "currency": "EUR", "instrument": mandate.scheme}
    if erp.get("bic"):
        config["BIC"] = erp["bic"]
    sdd = SepaDD(config, schema=SCHEMA, clean=True)
    sdd.msg_id = "LH" + hashlib.sha256(str(invoice["id"]).encode()).hexdigest()[:30]
    payment: dict[str, Any] = {
        "name": mandate.debtor_name, "IBAN": mandate.iban,
        "amount": int(Decimal(str(invoice["total"])) * 100), "type": sequence,
        "collection_date": collection_date, "mandate_id": mandate.mandate_id,
        "mandate_date": mandate.signed_on, "description": reference, "endtoend_id": reference,
    }
    if mandate.bic:
        payment["BIC"] = mandate.bic
    sdd.add_payment(payment)
    root = etree.fromstring(sdd.export(validate=False))
    ns = {"p": root.nsmap[None]}
    for rmt in root.findall(".//p:RmtInf", ns):  # unstructured -> the structured ISO 11649 reference
        for child in list(rmt):
            rmt.remove(child)
        q = f"{{{ns['p']}}}"
        strd = etree.SubElement(etree.SubElement(rmt, q + "Strd"), q + "CdtrRefInf")
        tp = etree.SubElement(strd, q + "Tp")
        etree.SubElement(etree.SubElement(tp, q + "CdOrPrtry"), q + "Cd").text = "SCOR"
        etree.SubElement(tp, q + "Issr").text = "ISO"
        etree.SubElement(strd, q + "Ref").text = reference
    schema = etree.XMLSchema(etree.parse(str(schema_path())))
    if not schema.validate(root):
        raise ValueError(f"pain.008 for {invoice['id']} fails {SCHEMA}: {schema.error_log}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _write_once(final: Path, data: bytes) -> bool:
    """Write `final` atomically unless it exists; True when this call wrote it."""
    if final.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".partial-", suffix=".xml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)  # fails if another run put it there first: never overwritten
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


class SepaCollector:
    def __init__(self, gateway: Any, db: sessionmaker[Session], *, parties: Mapping[str, Any],
                 directory: Path) -> None:
        self.gateway, self.db, self.parties, self.directory = gateway, db, parties, directory
        self.client = ContractClient.of(gateway)

    def run_once(self) -> list[str]:
        """Produce the missing collection files; returns the invoice ids written by this call."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.db() as session:
            mandates = {m.contract_id: m for m in session.scalars(select(SepaMandate))}
            done = set(session.scalars(select(SepaCollection.invoice_id)))
            due = [i for i in session.scalars(select(InvoiceView).where(
                InvoiceView.type == "invoice", InvoiceView.status.in_(COLLECTABLE),
                InvoiceView.contract_id.in_(list(mandates))).order_by(InvoiceView.id)) if i.id not in done]
            for row in due:
                session.expunge(row)
            for m in mandates.values():
                session.expunge(m)
        written = []
        for row in due:
            if self._collect(row, mandates[row.contract_id]):
                written.append(row.id)
        return written

    def _collect(self, row: InvoiceView, mandate: SepaMandate) -> bool:
        if "/" in row.id or row.id.startswith("."):
            return False
        invoice = dict(self.client.get_invoice(row.id, as_org=row.provider).raw)
        contract = dict(self.client.get_contract(row.contract_id, as_org=row.provider).raw)
        with self.db() as session:
            earlier = session.scalar(select(SepaCollection.invoice_id).where(
                SepaCollection.mandate_id == mandate.mandate_id, SepaCollection.invoice_id != row.id))
        issued_at = str(invoice.get("issued_at") or "")[:10] or dt.date.today().isoformat()
        issued = dt.date.fromisoformat(issued_at)
        days = int(contract.get("payment_terms_days") or DEFAULT_DAYS)
        final = self.directory / f"{row.id}.pain008.xml"
        wrote = False
        if not final.exists():
            data = build_pain008(invoice, mandate, self.parties.get(row.provider) or {},
                                 sequence="RCUR" if earlier else "FRST",
                                 collection_date=issued + dt.timedelta(days=days))
            wrote = _write_once(final, data)
        with self.db.begin() as session:
            if session.get(SepaCollection, row.id) is None:
                session.add(SepaCollection(invoice_id=row.id, contract_id=row.contract_id,
                                           mandate_id=mandate.mandate_id, file=str(final),
                                           amount=str(invoice["total"])))
        return wrote
