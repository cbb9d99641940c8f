"""Audit units without I/O: malformed bundles are failures (never exceptions), report rendering, and the
export helpers on hand-made bundles (local days, aggregations, CSV columns)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest

from hub.audit.exports import check_scope, daily_usage, lines_csv, readings_csv
from hub.audit.proof import FORMAT, invoice_tx_ids
from hub.audit.report import Failure, VerificationReport, short
from hub.audit.verify import verify_bundle

pytestmark = pytest.mark.unit


def _parts(report: VerificationReport) -> list[tuple[str, str]]:
    return [(f.part, f.check) for f in report.failures]


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [
        ([], ("bundle", "format")),
        ({"format": "ledgerhub-proof/0"}, ("bundle", "format")),
        ({"format": FORMAT, "ledger": {"kind": "besu", "network_id": "ch1"}}, ("ledger", "unsupported")),
        # a Fabric bundle without its config block (the trust anchor): nothing can be checked (ADR 0034)
        ({"format": FORMAT, "ledger": {"kind": "fabric", "network_id": "ch1"}}, ("config block", "config")),
        ({"format": FORMAT, "ledger": "x"}, ("ledger", "unsupported")),
        ({"format": FORMAT, "ledger": {"kind": "embedded", "network_id": "n"}}, ("genesis", "genesis")),
        (
            {
                "format": FORMAT,
                "ledger": {
                    "kind": "embedded",
                    "network_id": "n",
                    "genesis": {"header": "{}", "config": "{}"},
                },
            },
            ("genesis", "genesis"),
        ),
        (
            {
                "format": FORMAT,
                "ledger": {"kind": "embedded", "network_id": "n", "genesis": {"header": 7, "config": None}},
            },
            ("genesis", "genesis"),
        ),
    ],
)
def test_malformed_bundles_are_failures(bundle: Any, expected: tuple[str, str]) -> None:
    report = verify_bundle(bundle)
    assert not report.ok
    assert _parts(report) == [expected]


def test_report_rendering() -> None:
    report = VerificationReport(invoice_id="inv-1", network_id="net")
    report.count("readings", 3)
    assert report.ok and "VERIFIED" in report.summary() and "3 readings" in report.summary()
    report.fail("reading r-17", "differs", "quantity differs from recorded transaction 3f2a…")
    assert not report.ok
    assert str(report.failures[0]) == "reading r-17: quantity differs from recorded transaction 3f2a…"
    assert "FAILED: 1 problem(s)" in report.summary()
    as_json = report.to_json()
    assert as_json["ok"] is False and as_json["failures"][0]["part"] == "reading r-17"
    assert report.failed_checks() == {"differs"}
    assert Failure("a", "b", "c").to_json() == {"part": "a", "check": "b", "detail": "c"}
    assert short("f" * 64) == "f" * 12 + "…" and short("abc") == "abc"


def test_invoice_tx_ids_cover_every_rewrite() -> None:
    invoice = {
        "tx_id": "t-close",
        "history": [{"status": "ISSUED", "tx_id": "t-close"}, {"status": "POSTED", "tx_id": "t-post"}],
        "erp_refs": [{"tx_id": "t-post"}],
        "payments": [{"tx_id": "t-pay"}],
        "dispute": {"tx_id": "t-dispute"},
    }
    assert sorted(set(invoice_tx_ids(invoice))) == ["t-close", "t-dispute", "t-pay", "t-post"]
    assert invoice_tx_ids({"tx_id": "t"}) == ["t"]


def _bundle() -> dict[str, Any]:
    def r(rid: str, metric: str, q: str, ts: str, tx: str = "tx-a") -> dict[str, Any]:
        return {
            "id": rid,
            "device_id": "dev-1",
            "metric": metric,
            "quantity": q,
            "timestamp": ts,
            "message_id": "m-1",
            "tx_id": tx,
            "contract_id": "c-1",
            "period": "2026-11",
        }

    return {
        "contract": {
            "id": "c-1",
            "timezone": "Europe/Berlin",
            "metrics": {
                "scan": {"aggregation": "sum", "unit": "scan"},
                "peak_kw": {"aggregation": "max", "unit": "kW"},
            },
        },
        "invoice": {
            "id": "inv-c-1-2026-11",
            "contract_id": "c-1",
            "period": "2026-11",
            "currency": "EUR",
            "lines": [
                {"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"},
                {
                    "charge_id": "scans",
                    "model": "per_unit",
                    "metric": "scan",
                    "quantity": "3",
                    "amount": "30.00",
                },
            ],
        },
        "transactions": [{"tx_id": "tx-a", "block": 4}, {"tx_id": "tx-b", "block": 9}],
        "readings": [
            r("r-2", "scan", "1", "2026-11-03T23:30:00Z", "tx-b"),  # 00:30 on the 4th in Berlin
            r("r-1", "scan", "2", "2026-11-03T10:00:00+01:00"),
            r("r-3", "peak_kw", "41.5", "2026-11-03T11:00:00+01:00"),
            r("r-4", "peak_kw", "39.0", "2026-11-03T12:00:00+01:00"),
        ],
    }


def test_daily_usage_uses_local_days_and_the_metric_aggregation() -> None:
    usage = daily_usage(_bundle())
    assert usage["scan"] == [("2026-11-03", Decimal("2")), ("2026-11-04", Decimal("1"))]
    assert usage["peak_kw"] == [("2026-11-03", Decimal("41.5"))]


def test_readings_csv_in_time_order_with_blocks() -> None:
    rows = list(csv.DictReader(io.StringIO(readings_csv(_bundle()))))
    assert [r["id"] for r in rows] == ["r-1", "r-3", "r-4", "r-2"]
    assert rows[-1]["block"] == "9" and rows[0]["block"] == "4"
    assert rows[0]["quantity"] == "2" and rows[1]["quantity"] == "41.5"  # strings as recorded


def test_lines_csv_and_scope() -> None:
    rows = list(csv.DictReader(io.StringIO(lines_csv(_bundle()))))
    assert [(r["charge_id"], r["metric"], r["amount"]) for r in rows] == [
        ("platform", "", "500.00"),
        ("scans", "scan", "30.00"),
    ]
    check_scope(_bundle(), "c-1", "2026-11")
    with pytest.raises(ValueError, match="not c-2 2026-11"):
        check_scope(_bundle(), "c-2", "2026-11")
