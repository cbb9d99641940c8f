"""An unknown transaction is `LedgerNotFound`, and that is what the hub catches around ledger look-ups; a bare
KeyError from a bug is not mistaken for "not found" (ADR 0058)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hub.ingest import Ingestor
from hub.ledger.base import LedgerError, LedgerNotFound, LedgerUnavailable


class _Ledger:
    """`tx` of one function under test: raises what it is told to, else answers a VALID transaction."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def tx(self, tx_id: str) -> Any:
        if self.error is not None:
            raise self.error
        return SimpleNamespace(tx_id=tx_id, block=7, status="VALID",
                               response=b'{"results": [], "accepted": 0, "tx_id": "tx-1"}')


def _resolve(ledger: _Ledger, tx_id: str = "tx-1") -> Any:
    # Ingestor._resolve_unknown reads only self.gateway.ledger: called on a stand-in for the ingestor
    return Ingestor._resolve_unknown(SimpleNamespace(gateway=SimpleNamespace(ledger=ledger)), tx_id)  # type: ignore[arg-type]


def test_ledger_not_found_is_both_a_ledger_error_and_a_key_error() -> None:
    error = LedgerNotFound("transaction", "tx-1")
    assert isinstance(error, LedgerError) and isinstance(error, KeyError)
    assert "tx-1" in str(error)


def test_an_unknown_transaction_leaves_the_commit_unresolved() -> None:
    assert _resolve(_Ledger(LedgerNotFound("transaction", "tx-1"))) is None


def test_an_unreachable_ledger_leaves_the_commit_unresolved() -> None:
    assert _resolve(_Ledger(LedgerUnavailable("peer down"))) is None


def test_a_landed_transaction_resolves_with_its_answer() -> None:
    resolved = _resolve(_Ledger())
    assert resolved is not None and resolved.commit is not None
    commit = resolved.commit
    assert (commit.tx_id, commit.block, resolved.tx_id, resolved.accepted) == ("tx-1", 7, "tx-1", 0)


def test_a_bare_key_error_is_a_bug_and_propagates() -> None:
    with pytest.raises(KeyError) as info:
        _resolve(_Ledger(KeyError("response")))
    assert not isinstance(info.value, LedgerNotFound)

