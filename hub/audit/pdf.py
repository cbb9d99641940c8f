"""The PDF audit report of one invoice: the verdict first, then the invoice, usage, and provenance.

The verification result comes first because it is what an auditor signs off on; everything below it is
read from the same proof bundle the verdict is about. Charts are drawn with matplotlib's object API
(`Figure`, no pyplot global state, so rendering is safe in a server thread) into PNGs embedded by
reportlab; text uses the standard PDF fonts so it can be extracted and searched.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from chaincode import creditor_ref
from hub.audit.exports import daily_usage, provenance
from hub.audit.proof import involved_orgs
from hub.audit.report import VerificationReport

MAX_LISTED_FAILURES = 40
GREEN = colors.HexColor("#1b7f3b")
RED = colors.HexColor("#b3261e")


def _esc(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list[list[Any]], widths: list[float], *, header: bool = True, right: int = 0) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.grey),
    ]
    if header:
        style += [
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ]
    if right:
        style.append(("ALIGN", (-right, 0), (-1, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table


def _chart(metric: str, unit: str, points: list[tuple[str, Decimal]]) -> Image:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 1.8), dpi=150)
    ax = fig.add_subplot()
    labels = [day[5:] for day, _ in points]  # MM-DD
    ax.bar(range(len(points)), [float(v) for _, v in points], color="#3b6ea5")  # plotting only
    ax.set_xticks(range(len(points)), labels, rotation=60, fontsize=6)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{metric} per day ({unit})", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image(buf, width=17 * cm, height=17 * cm * 1.8 / 7.0)


def _verdict(report: VerificationReport, styles: Any) -> list[Any]:
    flow: list[Any] = []
    color = GREEN if report.ok else RED
    style = ParagraphStyle("verdict", parent=styles["Heading2"], textColor=color)
    if report.ok:
        flow.append(Paragraph("Proof bundle: VERIFIED", style))
        flow.append(
            Paragraph(
                "Every device signature, creator and endorsement signature, certificate chain, block hash "
                "link and data hash of the bundle checks out, the readings are exactly those the closing "
                "transaction merged, and the invoice recomputed from them with the agreed plan matches.",
                styles["BodyText"],
            )
        )
    else:
        flow.append(Paragraph(f"Proof bundle: FAILED ({len(report.failures)} problems)", style))
        for failure in report.failures[:MAX_LISTED_FAILURES]:
            flow.append(Paragraph(f"- {_esc(failure)}", styles["BodyText"]))
        if len(report.failures) > MAX_LISTED_FAILURES:
            flow.append(
                Paragraph(f"... and {len(report.failures) - MAX_LISTED_FAILURES} more", styles["BodyText"])
            )
    checked = ", ".join(f"{n} {what}" for what, n in sorted(report.checked.items()))
    flow.append(Paragraph(f"Checked: {_esc(checked)}.", styles["BodyText"]))
    return flow


def render_pdf(bundle: Mapping[str, Any], report: VerificationReport) -> bytes:
    """The audit report of `bundle` (with `report`, its verification result) as PDF bytes."""
    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    invoice, contract = bundle["invoice"], bundle["contract"]
    cur = invoice["currency"]
    flow: list[Any] = [
        Paragraph(f"Audit report: invoice {_esc(invoice['id'])}", styles["Title"]),
        Paragraph(
            f"Contract {_esc(contract['id'])}, period {_esc(invoice['period'])} "
            f"({_esc(contract['timezone'])}); "
            f"provider {_esc(invoice['provider'])}, customer {_esc(invoice['customer'])}; "
            f"status {_esc(invoice['status'])}; ledger network {_esc(bundle['ledger']['network_id'])}.",
            body,
        ),
        Spacer(1, 0.3 * cm),
        *_verdict(report, styles),
        Paragraph("Invoice", styles["Heading2"]),
    ]
    rows: list[list[Any]] = [["Charge", "Model", "Metric", "Quantity", f"Amount ({cur})"]]
    for line in invoice["lines"]:
        rows.append(
            [line["charge_id"], line["model"], line.get("metric", ""), line["quantity"], line["amount"]]
        )
    rate = invoice.get("tax_rate")
    rows += [
        ["Subtotal", "", "", "", invoice["subtotal"]],
        [f"Tax ({Decimal(rate) * 100:g} %)" if rate else "Tax", "", "", "", invoice["tax"]],
        [f"Total {cur}", "", "", "", invoice["total"]],
    ]
    table = _table(rows, [4.2 * cm, 3.4 * cm, 3.2 * cm, 2.8 * cm, 3.4 * cm], right=2)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 10),
                ("LINEABOVE", (0, -3), (-1, -3), 0.5, colors.grey),
            ]
        )
    )
    flow += [
        table,
        Paragraph(
            f"Readings rated: {invoice['readings']}; readings digest "
            f"{_esc(invoice['readings_digest'][:32])}...",
            body,
        ),
    ]
    if invoice.get("type", "invoice") == "invoice":
        reference = creditor_ref.printed(creditor_ref.for_invoice(str(invoice["id"])))
        flow.append(Paragraph(f"Payment reference (ISO 11649): {reference}", body))
    flow.append(Paragraph("Usage per day", styles["Heading2"]))
    usage = daily_usage(bundle)
    if not usage:
        flow.append(Paragraph("No readings in this period.", body))
    for metric, points in usage.items():
        unit = contract["metrics"].get(metric, {}).get("unit", "")
        flow.append(_chart(metric, unit, points))
    prov = provenance(bundle)
    flow.append(Paragraph("Provenance", styles["Heading2"]))
    fns = ", ".join(f"{n} x {fn}" for fn, n in sorted(prov.functions.items()))
    blocks = f"{len(prov.blocks)} (blocks {prov.blocks[0]} to {prov.blocks[-1]})" if prov.blocks else "0"
    small = ParagraphStyle("small", parent=body, fontSize=9, leading=11)
    summary = [
        ["Signed usage messages", str(prov.messages)],
        ["Readings", str(prov.readings)],
        ["Devices", ", ".join(prov.devices) or "-"],
        ["Ledger transactions", f"{prov.transactions}: {fns}"],
        ["Blocks holding them", blocks],
        ["Endorsing orgs", ", ".join(prov.endorsing_orgs) or "-"],
        ["Contract accepted in tx", contract.get("accepted_tx", "")],
        ["Invoice issued in tx", invoice["tx_id"]],
    ]
    flow.append(
        _table([[k, Paragraph(_esc(v), small)] for k, v in summary], [4.5 * cm, 12.5 * cm], header=False)
    )
    flow.append(Paragraph("Transactions of the proof", styles["Heading3"]))
    tx_rows: list[list[Any]] = [["Block", "Function", "Transaction id", "Endorsed by"]]
    for tx in bundle.get("transactions", []):
        tx_rows.append(
            [
                str(tx["block"]),
                tx["function"],
                tx["tx_id"][:24] + "...",
                ", ".join(involved_orgs([tx], bundle.get("blocks"))),
            ]
        )
    flow.append(_table(tx_rows, [1.6 * cm, 4.2 * cm, 5.6 * cm, 5.6 * cm]))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.6 * cm,
        bottomMargin=1.6 * cm,
        title=f"Audit report {invoice['id']}",
        author="LedgerHub",
    )
    doc.build(flow)
    return buf.getvalue()
