"""Whole-ledger verification, kept at its old import path: it lives in `hub.ledger.embedded.verify` and is
reached through the interface as `Ledger.verify()` (ADR 0058)."""

from hub.ledger.embedded.verify import Problem, Report, verify_ledger

__all__ = ["Problem", "Report", "verify_ledger"]
