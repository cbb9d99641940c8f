"""Exports of one contract's period for auditors and accountants: CSV of readings, CSV of invoice lines,
and the PDF audit report (`hub.audit.pdf`).

Everything is derived from the proof bundle, not from the hub's read models: what the CSV lists is exactly
what the proof proves (each reading with the message, transaction and block that recorded it), and the PDF
shows the verification result of that same bundle. `export_files` is what `ledgerhub audit export` runs.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from chaincode import rating

READING_COLUMNS = ("id", "device", "metric", "quantity", "timestamp", "message_id", "tx_id", "block")
LINE_COLUMNS = ("invoice_id", "charge_id", "model", "metric", "quantity", "amount", "currency")
FORMATS = ("csv", "pdf")


def _tx_blocks(bundle: Mapping[str, Any]) -> dict[str, int]:
    return {t["tx_id"]: t["block"] for t in bundle.get("transactions", [])}


def _by_time(readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # a reading is (device, reading id): two devices may send the same id at the same instant
    return sorted(
        readings, key=lambda r: (rating.parse_timestamp(r["timestamp"]), r["id"], r.get("device_id", ""))
    )


def readings_csv(bundle: Mapping[str, Any]) -> str:
    """One row per reading the invoice rests on, in time order, with its provenance."""
    blocks = _tx_blocks(bundle)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(READING_COLUMNS)
    for r in _by_time(list(bundle["readings"])):
        writer.writerow(
            [
                r["id"],
                r["device_id"],
                r["metric"],
                r["quantity"],
                r["timestamp"],
                r["message_id"],
                r["tx_id"],
                blocks.get(r["tx_id"], ""),
            ]
        )
    return out.getvalue()


def lines_csv(bundle: Mapping[str, Any]) -> str:
    """The invoice's lines as issued (amounts as decimal strings, never floats)."""
    invoice = bundle["invoice"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LINE_COLUMNS)
    for line in invoice["lines"]:
        writer.writerow(
            [
                invoice["id"],
                line["charge_id"],
                line["model"],
                line.get("metric", ""),
                line["quantity"],
                line["amount"],
                invoice["currency"],
            ]
        )
    return out.getvalue()


@dataclass(frozen=True)
class Provenance:
    """How much evidence stands behind the invoice, for the report's summary."""

    messages: int
    readings: int
    transactions: int
    blocks: list[int]
    functions: dict[str, int]
    endorsing_orgs: list[str]
    devices: list[str]


def provenance(bundle: Mapping[str, Any]) -> Provenance:
    from hub.audit.proof import involved_orgs

    txs = list(bundle.get("transactions", []))
    return Provenance(
        messages=len(bundle.get("messages", [])),
        readings=len(bundle.get("readings", [])),
        transactions=len(txs),
        blocks=sorted({t["block"] for t in txs}),
        functions=dict(Counter(t["function"] for t in txs)),
        endorsing_orgs=involved_orgs(txs, bundle.get("blocks")),
        devices=sorted({r["device_id"] for r in bundle.get("readings", [])}),
    )


def daily_usage(bundle: Mapping[str, Any]) -> dict[str, list[tuple[str, Decimal]]]:
    """Per metric, per local day (the contract's timezone), the day's value under the metric's
    aggregation (sum, max, count or latest): what the usage charts plot."""
    contract = bundle["contract"]
    tz = ZoneInfo(contract["timezone"])
    aggregation = {m: spec.get("aggregation", "sum") for m, spec in contract["metrics"].items()}
    days: dict[str, dict[str, Decimal]] = {}
    for r in _by_time(list(bundle["readings"])):
        metric, q = r["metric"], Decimal(r["quantity"])
        day = rating.parse_timestamp(r["timestamp"]).astimezone(tz).date().isoformat()
        per_day = days.setdefault(metric, {})
        kind = aggregation.get(metric, "sum")
        if kind == "max":
            per_day[day] = max(per_day.get(day, q), q)
        elif kind == "count":
            per_day[day] = per_day.get(day, Decimal(0)) + 1
        elif kind == "latest":
            per_day[day] = q  # readings come in time order
        else:
            per_day[day] = per_day.get(day, Decimal(0)) + q
    return {m: sorted(d.items()) for m, d in sorted(days.items())}


def check_scope(bundle: Mapping[str, Any], contract_id: str, period: str) -> None:
    invoice = bundle.get("invoice") or {}
    if invoice.get("contract_id") != contract_id or invoice.get("period") != period:
        raise ValueError(
            f"the bundle proves {invoice.get('contract_id')} {invoice.get('period')}, "
            f"not {contract_id} {period}"
        )


def export_files(bundle: Mapping[str, Any], fmt: str, out_dir: Path, report: Any = None) -> list[Path]:
    """Write the export files of `bundle` into `out_dir`; returns their paths. `report`: the bundle's
    `VerificationReport` when the caller already has it (the PDF shows it), else it is computed."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    invoice_id = bundle["invoice"]["id"]
    if fmt == "csv":
        readings = out_dir / f"{invoice_id}.readings.csv"
        lines = out_dir / f"{invoice_id}.lines.csv"
        readings.write_text(readings_csv(bundle), encoding="utf-8")
        lines.write_text(lines_csv(bundle), encoding="utf-8")
        return [readings, lines]
    from hub.audit.pdf import render_pdf
    from hub.audit.verify import verify_bundle

    pdf = out_dir / f"{invoice_id}.audit.pdf"
    pdf.write_bytes(render_pdf(bundle, report if report is not None else verify_bundle(bundle)))
    return [pdf]
