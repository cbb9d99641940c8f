"""ISO 20022 bank-to-customer messages, read strictly: camt.053 (statement) and camt.054 (debit/credit
notification), versions 001.02 to 001.13.

No package on PyPI that ships the official XSDs is one this project can depend on (ADR 0041), so the file
is parsed with lxml under hard limits and every field the hub uses is checked here: a hardened parser
(no DTD, no entities, no network, no huge trees), a size limit before parsing, the exact namespaces,
required elements, ISO 4217 currencies with their minor units, plain positive amounts. Anything else is a
`StatementError` with a stable code, raised before anything is recorded.

Fields read per entry (`Ntry`), and per transaction (`NtryDtls/TxDtls`) when there are several:
`AcctSvcrRef` / `NtryRef` (the bank's id: idempotency), `Amt/@Ccy`, `CdtDbtInd`, `RvslInd`, `Sts`
(`BOOK` or, from 001.08, `Sts/Cd`), `BookgDt`, `TxDtls/Refs/EndToEndId`, `RmtInf/Strd/CdtrRefInf/Ref`
(else an RF found in `RmtInf/Ustrd`), the debtor's name (`RltdPties/Dbtr/Nm`, from 001.08
`RltdPties/Dbtr/Pty/Nm`) and the return reason (`RtrInf/Rsn/Cd`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from chaincode import creditor_ref
from chaincode.money import UnknownCurrency, minor_units

MAX_STATEMENT_BYTES = 20 * 1024 * 1024
MAX_ENTRIES = 100_000
_NS = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(camt\.05[34])\.001\.(0[2-9]|1[0-3])$")
_ROOTS = {"camt.053": ("BkToCstmrStmt", "Stmt"), "camt.054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}
_AMOUNT = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,5})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_RF_IN_TEXT = re.compile(r"RF[0-9]{2}(?: ?[0-9A-Za-z]){1,21}")


class StatementError(Exception):
    """A statement refused as a whole (nothing recorded); `status` is the HTTP status for the API."""

    def __init__(self, code: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


@dataclass(frozen=True)
class Entry:
    key: str  # "{account}:{bank reference}[/{n}]": unique per bank booking, the idempotency key
    message_type: str  # camt.053 | camt.054
    credit: bool  # CdtDbtInd CRDT
    reversal: bool  # RvslInd true
    booked: bool  # status BOOK (pending / informational entries are not money yet)
    amount: Decimal
    currency: str
    booking_date: str | None
    reference: str | None  # a valid RF reference, normalised
    quoted_reference: str | None  # what the payer quoted, valid or not
    end_to_end_id: str | None
    debtor_name: str | None
    return_reason: str | None
    account: str

    @property
    def text_amount(self) -> str:
        return f"{self.amount:.{minor_units(self.currency)}f}"


@dataclass(frozen=True)
class Statement:
    message_type: str
    version: str
    message_id: str
    entries: tuple[Entry, ...]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


def parse(data: bytes, *, max_bytes: int = MAX_STATEMENT_BYTES) -> Statement:
    """The statement in `data`, or `StatementError` (codes: statement_too_large, malformed_xml,
    xml_dtd_forbidden, unsupported_statement, invalid_statement, unknown_currency, invalid_amount)."""
    if len(data) > max_bytes:
        raise StatementError("statement_too_large",
                             f"the file has {len(data)} bytes; the limit is {max_bytes}", 413)
    head = data[:4096].lstrip()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or head.startswith((b"\xfe\xff", b"\xff\xfe")):
        # DTDs (and UTF-16, which would hide one from this check) have no place in ISO 20022 messages:
        # refusing them outright rules out XXE and entity expansion whatever the parser does
        raise StatementError("xml_dtd_forbidden", "DOCTYPE / ENTITY declarations are not accepted", 400)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise StatementError("malformed_xml", f"not well-formed XML: {exc}", 400) from None
    if root.getroottree().docinfo.doctype:
        raise StatementError("xml_dtd_forbidden", "DOCTYPE declarations are not accepted", 400)
    qname = etree.QName(root)
    match = _NS.match(qname.namespace or "")
    if qname.localname != "Document" or match is None:
        raise StatementError("unsupported_statement",
                             f"expected a camt.053 or camt.054 (001.02-001.13) Document, got "
                             f"{{{qname.namespace}}}{qname.localname}")
    kind, version = match.group(1), match.group(2)
    ns = {"c": qname.namespace}
    body_name, report_name = _ROOTS[kind]
    body = _one(root, f"c:{body_name}", ns, "Document")
    message_id = _text(body, "c:GrpHdr/c:MsgId", ns, required=True, where=body_name)
    entries: list[Entry] = []
    seen: dict[str, Entry] = {}
    reports = body.findall(f"c:{report_name}", ns)
    if not reports:
        raise StatementError("invalid_statement", f"{body_name} has no {report_name}")
    for report in reports:
        account = (_text(report, "c:Acct/c:Id/c:IBAN", ns) or _text(report, "c:Acct/c:Id/c:Othr/c:Id", ns))
        if not account:
            raise StatementError("invalid_statement", f"{report_name} without Acct/Id (IBAN or Othr/Id)")
        account_currency = _text(report, "c:Acct/c:Ccy", ns)
        if account_currency is not None:
            _currency(account_currency)
        for position, ntry in enumerate(report.findall("c:Ntry", ns), start=1):
            for entry in _entries(ntry, ns, kind, account, position):
                if account_currency is not None and entry.currency != account_currency:
                    raise StatementError("currency_mismatch",
                                         f"entry {entry.key} is in {entry.currency}, the account in "
                                         f"{account_currency}")
                earlier = seen.get(entry.key)
                if earlier is not None:
                    if earlier != entry:
                        raise StatementError("invalid_statement",
                                             f"bank reference {entry.key} names two different entries")
                    continue
                seen[entry.key] = entry
                entries.append(entry)
                if len(entries) > MAX_ENTRIES:
                    raise StatementError("statement_too_large", f"more than {MAX_ENTRIES} entries", 413)
    return Statement(kind, f"001.{version}", message_id, tuple(entries))


def _entries(ntry: etree._Element, ns: dict[str, str], kind: str, account: str, position: int) -> list[Entry]:
    where = f"Ntry #{position}"
    bank_ref = _text(ntry, "c:AcctSvcrRef", ns) or _text(ntry, "c:NtryRef", ns)
    if not bank_ref:
        raise StatementError("invalid_statement", f"{where} has neither AcctSvcrRef nor NtryRef: without "
                             "the bank's reference an entry cannot be recorded exactly once")
    amount, currency = _amount(_one(ntry, "c:Amt", ns, where), where)
    credit = _indicator(_text(ntry, "c:CdtDbtInd", ns, required=True, where=where), where)
    reversal_text = _text(ntry, "c:RvslInd", ns)
    if reversal_text not in (None, "true", "false", "1", "0"):
        raise StatementError("invalid_statement", f"{where}: RvslInd {reversal_text!r} is not a boolean")
    reversal = reversal_text in ("true", "1")
    status = _text(ntry, "c:Sts/c:Cd", ns) or _text(ntry, "c:Sts", ns, required=True, where=where)
    booking = _text(ntry, "c:BookgDt/c:Dt", ns) or _text(ntry, "c:BookgDt/c:DtTm", ns)
    details = ntry.findall("c:NtryDtls/c:TxDtls", ns)
    if len(details) <= 1:
        tx = details[0] if details else None
        return [_entry(tx, ns, kind, f"{account}:{bank_ref}", amount, currency, credit, reversal, status,
                       booking, account)]
    out = []
    total = Decimal(0)
    for n, tx in enumerate(details, start=1):
        amt = tx.find("c:Amt", ns)
        if amt is None:
            amt = tx.find("c:AmtDtls/c:TxAmt/c:Amt", ns)
        if amt is None:
            raise StatementError("invalid_statement", f"{where} TxDtls #{n} has no amount (batch booking)")
        tx_amount, tx_currency = _amount(amt, f"{where} TxDtls #{n}")
        if tx_currency != currency:
            raise StatementError("currency_mismatch", f"{where} TxDtls #{n} is in {tx_currency}, the entry "
                                 f"in {currency}")
        total += tx_amount
        tx_ref = _text(tx, "c:Refs/c:AcctSvcrRef", ns) or str(n)
        out.append(_entry(tx, ns, kind, f"{account}:{bank_ref}/{tx_ref}", tx_amount, currency, credit,
                          reversal, status, booking, account))
    if total != amount:
        raise StatementError("invalid_statement",
                             f"{where}: its transactions add up to {total}, not {amount}")
    return out


def _entry(tx: etree._Element | None, ns: dict[str, str], kind: str, key: str, amount: Decimal,
           currency: str, credit: bool, reversal: bool, status: str, booking: str | None,
           account: str) -> Entry:
    quoted = reference = e2e = debtor = reason = None
    if tx is not None:
        quoted = _text(tx, "c:RmtInf/c:Strd/c:CdtrRefInf/c:Ref", ns)
        free = " ".join(t.text or "" for t in tx.findall("c:RmtInf/c:Ustrd", ns))
        if quoted is None and (found := _RF_IN_TEXT.search(free.upper())):
            quoted = _longest_valid(found.group(0))
        if quoted is not None:
            try:
                reference = creditor_ref.normalise(quoted)
            except creditor_ref.InvalidReference:
                reference = None  # quoted but wrong: left to the fallback match and the operator
        e2e = _text(tx, "c:Refs/c:EndToEndId", ns)
        if e2e == "NOTPROVIDED":
            e2e = None
        debtor = _text(tx, "c:RltdPties/c:Dbtr/c:Pty/c:Nm", ns) or _text(tx, "c:RltdPties/c:Dbtr/c:Nm", ns)
        reason = _text(tx, "c:RtrInf/c:Rsn/c:Cd", ns) or _text(tx, "c:RtrInf/c:Rsn/c:Prtry", ns)
    return Entry(key=key, message_type=kind, credit=credit, reversal=reversal, booked=status == "BOOK",
                 amount=amount, currency=currency, booking_date=booking, reference=reference,
                 quoted_reference=quoted, end_to_end_id=e2e, debtor_name=debtor, return_reason=reason,
                 account=account)


def _longest_valid(text: str) -> str:
    """An RF reference in free text runs into the words after it ("RF18 5390 0754 7034 THANKS"): the
    longest prefix with valid check digits, else the text as found (then refused as invalid)."""
    compact = "".join(text.split())
    for end in range(len(compact), 4, -1):
        if creditor_ref.is_valid(compact[:end]):
            return compact[:end]
    return compact


def _one(parent: etree._Element, path: str, ns: dict[str, str], where: str) -> etree._Element:
    node = parent.find(path, ns)
    if node is None:
        raise StatementError("invalid_statement", f"{where}: missing {path.replace('c:', '')}")
    return node


def _text(parent: etree._Element, path: str, ns: dict[str, str], *, required: bool = False,
          where: str = "") -> str | None:
    node = parent.find(path, ns)
    text = None if node is None or node.text is None else node.text.strip()
    if required and not text:
        raise StatementError("invalid_statement", f"{where}: missing {path.replace('c:', '')}")
    return text or None


def _currency(code: str) -> int:
    if not _CURRENCY.match(code):
        raise StatementError("unknown_currency", f"{code!r} is not an ISO 4217 currency code")
    try:
        return minor_units(code)
    except UnknownCurrency:
        raise StatementError("unknown_currency", f"unknown currency {code!r}") from None


def _amount(node: etree._Element, where: str) -> tuple[Decimal, str]:
    currency = node.get("Ccy") or ""
    exponent = _currency(currency)
    text = (node.text or "").strip()
    if not _AMOUNT.match(text):
        raise StatementError("invalid_amount", f"{where}: amount {text!r} is not a plain decimal")
    amount = Decimal(text)
    if amount <= 0:
        raise StatementError("invalid_amount", f"{where}: amount {text} is not positive")
    if len(text.partition(".")[2]) > exponent:
        raise StatementError("invalid_amount", f"{where}: {text} {currency} has more decimals than "
                             f"{currency}'s {exponent}")
    return amount.quantize(Decimal(1).scaleb(-exponent)), currency


def _indicator(text: str | None, where: str) -> bool:
    if text not in ("CRDT", "DBIT"):
        raise StatementError("invalid_statement", f"{where}: CdtDbtInd {text!r} is not CRDT or DBIT")
    return text == "CRDT"
