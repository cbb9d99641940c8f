"""Bank statements for tests: camt.053 / camt.054 in versions 001.02 (2009 layout) and 001.08 (2019 layout),
element order as in the ISO 20022 schemas, built from short entry descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

IBAN = "DE89370400440532013000"


@dataclass
class E:
    """One bank entry: `ref` is the bank's AcctSvcrRef; `rf` the payer's structured reference."""

    ref: str
    amount: str
    currency: str = "EUR"
    credit: bool = True
    reversal: bool = False
    status: str = "BOOK"
    rf: str | None = None
    ustrd: str | None = None
    debtor: str | None = None
    e2e: str | None = None
    reason: str | None = None
    booking: str = "2026-12-05"


def _tx(e: E, v08: bool) -> str:
    parts = [f"<Refs><AcctSvcrRef>{escape(e.ref)}-TX</AcctSvcrRef>"
             f"<EndToEndId>{escape(e.e2e or 'NOTPROVIDED')}</EndToEndId></Refs>"]
    amount = f'<Amt Ccy="{e.currency}">{e.amount}</Amt>'
    if v08:
        parts.append(amount + f"<CdtDbtInd>{'CRDT' if e.credit else 'DBIT'}</CdtDbtInd>")
    else:
        parts.append(f"<AmtDtls><TxAmt>{amount}</TxAmt></AmtDtls>")
    if e.debtor:
        name = f"<Nm>{escape(e.debtor)}</Nm>"
        parts.append(f"<RltdPties><Dbtr>{'<Pty>' + name + '</Pty>' if v08 else name}</Dbtr></RltdPties>")
    if e.rf or e.ustrd:
        inner = f"<Ustrd>{escape(e.ustrd)}</Ustrd>" if e.ustrd else ""
        if e.rf:
            inner += ("<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>ISO</Issr></Tp>"
                      f"<Ref>{escape(e.rf)}</Ref></CdtrRefInf></Strd>")
        parts.append(f"<RmtInf>{inner}</RmtInf>")
    if e.reason:
        parts.append(f"<RtrInf><Rsn><Cd>{e.reason}</Cd></Rsn></RtrInf>")
    return "<TxDtls>" + "".join(parts) + "</TxDtls>"


def _entry(e: E, v08: bool) -> str:
    status = f"<Sts><Cd>{e.status}</Cd></Sts>" if v08 else f"<Sts>{e.status}</Sts>"
    family = ("IDDT", "UPDD") if e.reversal else ("RCDT", "ESCT")
    return (
        f'<Ntry><Amt Ccy="{e.currency}">{e.amount}</Amt>'
        f"<CdtDbtInd>{'CRDT' if e.credit else 'DBIT'}</CdtDbtInd>"
        + ("<RvslInd>true</RvslInd>" if e.reversal else "")
        + status
        + f"<BookgDt><Dt>{e.booking}</Dt></BookgDt><ValDt><Dt>{e.booking}</Dt></ValDt>"
        f"<AcctSvcrRef>{escape(e.ref)}</AcctSvcrRef>"
        f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{family[0]}</Cd><SubFmlyCd>{family[1]}</SubFmlyCd></Fmly>"
        f"</Domn></BkTxCd>"
        f"<NtryDtls>{_tx(e, v08)}</NtryDtls></Ntry>"
    )


def camt(entries: list[E], *, kind: str = "054", version: str = "08", msg_id: str = "MSG-1",
         iban: str = IBAN, account_currency: str | None = "EUR") -> bytes:
    v08 = version >= "08"
    ns = f"urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.{version}"
    acct = f"<Acct><Id><IBAN>{iban}</IBAN></Id>" + (
        f"<Ccy>{account_currency}</Ccy>" if account_currency else "") + "</Acct>"
    body = "".join(_entry(e, v08) for e in entries)
    header = f"<GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2026-12-05T18:00:00</CreDtTm></GrpHdr>"
    if kind == "053":
        balance = ('<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0.00</Amt>'
                   "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-12-05</Dt></Dt></Bal>")
        report = (f"<Stmt><Id>{msg_id}-S</Id><CreDtTm>2026-12-05T18:00:00</CreDtTm>{acct}{balance}{body}"
                  "</Stmt>")
        root = f"<BkToCstmrStmt>{header}{report}</BkToCstmrStmt>"
    else:
        report = f"<Ntfctn><Id>{msg_id}-N</Id><CreDtTm>2026-12-05T18:00:00</CreDtTm>{acct}{body}</Ntfctn>"
        root = f"<BkToCstmrDbtCdtNtfctn>{header}{report}</BkToCstmrDbtCdtNtfctn>"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{ns}">{root}</Document>'.encode()
