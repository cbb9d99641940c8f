"""Proofs over every charge model the rating code knows (time-of-use windows, dynamic prices carried by
readings, max and count aggregations) from two devices: the bundle verifies, the recomputation catches
changes that only these models are sensitive to, and the PDF charts each metric."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from hub.audit.exports import daily_usage, export_files
from hub.audit.verify import verify_bundle
from tests.helpers.audit import MODELS_TOTAL, Billed, billed_models_ledger, fresh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def billed_by() -> Callable[[Path], Billed]:
    """This module bills every charge model (the conftest's `billed` builds with it)."""
    return billed_models_ledger


def _reading(b: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(r for r in b["readings"] if r["id"] == rid)


def test_every_model_verifies(bundle: dict[str, Any]) -> None:
    assert bundle["invoice"]["total"] == MODELS_TOTAL
    assert {a["id"] for a in bundle["assets"]} == {"meter-1", "press-2"}
    report = verify_bundle(fresh(bundle))
    assert report.ok, report.summary()
    assert report.checked["device signatures"] == 2 and report.checked["assets"] == 2


@pytest.mark.parametrize(
    ("rid", "field", "value", "line"),
    [
        ("s2", "unit_price", "0.45", "market"),  # dynamic: the reading carries its price
        ("e1", "timestamp", "2026-11-02T19:00:00+01:00", "tou"),  # moves out of the peak window
        ("p1", "quantity", "42", "peak"),  # max aggregation
    ],
)
def test_model_specific_changes_are_caught(
    bundle: dict[str, Any], rid: str, field: str, value: str, line: str
) -> None:
    tampered = fresh(bundle)
    _reading(tampered, rid)[field] = value
    report = verify_bundle(tampered)
    found = {(f.part, f.check) for f in report.failures}
    assert (f"reading {rid}", "differs") in found  # against the recording transaction
    assert (f"reading {rid}", "message") in found  # against the device-signed message
    assert ("invoice", "readings_digest") in found
    assert any(part == f"invoice line {line}" and check == "line_amount" for part, check in found), (
        report.summary()
    )


def test_a_message_of_the_other_device_does_not_verify_with_this_key(bundle: dict[str, Any]) -> None:
    tampered = fresh(bundle)
    entry = next(m for m in tampered["messages"] if m["message"]["message_id"] == "b")
    entry["message"]["device_id"] = "meter-1"  # claims the meter sent the press's readings
    failures = {(f.part, f.check) for f in verify_bundle(tampered).failures}
    assert ("message b", "device_signature") in failures
    assert ("message b", "not_written") in failures


def test_daily_usage_and_pdf_cover_every_metric(bundle: dict[str, Any], tmp_path: Path) -> None:
    usage = daily_usage(bundle)
    assert set(usage) == {"energy", "spot", "peak_kw", "jobs"}
    assert dict(usage["peak_kw"])["2026-11-02"] == 40.5 and dict(usage["jobs"])["2026-11-04"] == 1
    (pdf,) = export_files(bundle, "pdf", tmp_path)
    pages = PdfReader(pdf).pages
    text = "\n".join(p.extract_text() for p in pages)
    assert sum(len(p.images) for p in pages) == 4  # one daily chart per metric
    assert MODELS_TOTAL in text and "VERIFIED" in text
    for metric in ("energy", "spot", "peak_kw", "jobs"):
        assert metric in text
