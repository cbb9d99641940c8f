"""Audit exports of a real invoice: the CSVs parsed and checked against the invoice, the PDF rendered and
read back (pypdf) for the total and the verification result. A copy of the PDF and a PNG of its first page
are kept in test-artifacts/ for people to look at."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from chaincode import creditor_ref
from hub.audit.exports import (
    LINE_COLUMNS,
    READING_COLUMNS,
    daily_usage,
    export_files,
    lines_csv,
    provenance,
    readings_csv,
)
from hub.audit.verify import verify_bundle
from tests.helpers.audit import INVOICE_ID, TOTAL, fresh

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_readings_csv_is_the_rated_usage(bundle: dict[str, Any]) -> None:
    text = readings_csv(bundle)
    assert text.splitlines()[0] == ",".join(READING_COLUMNS)
    rows = _rows(text)
    assert len(rows) == bundle["invoice"]["readings"] == 170
    assert len({r["id"] for r in rows}) == 170
    blocks = {t["tx_id"]: t["block"] for t in bundle["transactions"] if t["function"] == "RecordUsage"}
    for row in rows:
        assert int(row["block"]) == blocks[row["tx_id"]]  # every reading's transaction is a usage one
        assert row["device"] == "mri-berlin-01" and row["message_id"]
    per_metric: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        per_metric[row["metric"]] += Decimal(row["quantity"])
    lines = {ln.get("metric"): ln for ln in bundle["invoice"]["lines"]}
    assert per_metric["scan"] == Decimal(lines["scan"]["quantity"]) == 130
    assert per_metric["magnet_hours"] == Decimal(lines["magnet_hours"]["quantity"])
    stamps = [row["timestamp"] for row in rows]
    assert stamps[0].startswith("2026-11-01") and stamps[-1].startswith("2026-11-14")


def test_lines_csv_is_the_invoice(bundle: dict[str, Any]) -> None:
    rows = _rows(lines_csv(bundle))
    invoice = bundle["invoice"]
    assert list(rows[0]) == list(LINE_COLUMNS)
    assert [r["charge_id"] for r in rows] == [ln["charge_id"] for ln in invoice["lines"]]
    assert [r["amount"] for r in rows] == [ln["amount"] for ln in invoice["lines"]]
    assert {r["currency"] for r in rows} == {"EUR"} and {r["invoice_id"] for r in rows} == {INVOICE_ID}
    subtotal = sum(Decimal(r["amount"]) for r in rows)
    assert subtotal == Decimal(invoice["subtotal"])
    assert subtotal + Decimal(invoice["tax"]) == Decimal(invoice["total"]) == Decimal(TOTAL)


def test_daily_usage_and_provenance(bundle: dict[str, Any]) -> None:
    usage = daily_usage(bundle)
    assert set(usage) == {"scan", "magnet_hours"}
    assert sum(v for _, v in usage["scan"]) == 130
    assert usage["scan"][0][0] == "2026-11-01"
    prov = provenance(bundle)
    assert prov.readings == 170 and prov.messages == 4 and prov.transactions == 7
    assert prov.functions["RecordUsage"] == 3
    assert prov.endorsing_orgs == ["CustomerMSP", "ProviderMSP"]


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(pdf).pages)


def test_pdf_report_shows_the_invoice_and_the_verdict(bundle: dict[str, Any], tmp_path: Path) -> None:
    (pdf,) = export_files(bundle, "pdf", tmp_path)
    text = _text(pdf)
    assert f"invoice {INVOICE_ID}" in text
    assert "Proof bundle: VERIFIED" in text
    assert TOTAL in text and "11475.00" in text and "2180.25" in text
    assert "Usage per day" in text and "Provenance" in text
    assert "CustomerMSP, ProviderMSP" in text
    printed = creditor_ref.printed(creditor_ref.for_invoice(INVOICE_ID))
    assert f"Payment reference (ISO 11649): {printed}" in text
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(pdf, ARTIFACTS / "audit-report.pdf")
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(ARTIFACTS / "audit-report"),
        ],
        check=True,
    )
    assert (ARTIFACTS / "audit-report.png").stat().st_size > 10_000


def test_pdf_report_of_a_tampered_bundle_says_what_failed(bundle: dict[str, Any], tmp_path: Path) -> None:
    tampered = fresh(bundle)
    tampered["invoice"]["total"] = "13000.00"
    (pdf,) = export_files(tampered, "pdf", tmp_path)
    text = _text(pdf)
    assert "Proof bundle: FAILED" in text and "VERIFIED" not in text
    assert "invoice: total 13000.00 differs from recomputed 13655.25" in text.replace("\n", " ")
    report = verify_bundle(tampered)
    assert not report.ok


def test_csv_export_files(bundle: dict[str, Any], tmp_path: Path) -> None:
    paths = export_files(bundle, "csv", tmp_path / "out")
    assert [p.name for p in paths] == [f"{INVOICE_ID}.readings.csv", f"{INVOICE_ID}.lines.csv"]
    assert paths[0].read_text() == readings_csv(bundle)
    with pytest.raises(ValueError, match="format"):
        export_files(bundle, "xlsx", tmp_path)
