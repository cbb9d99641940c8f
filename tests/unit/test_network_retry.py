"""Which failures of a submitting CLI step `up` repeats, and which it reports at once."""

from __future__ import annotations

import pytest

from network.manage import _retry_transient
from network.procs import NetworkError

pytestmark = pytest.mark.unit


def _flaky(errors: list[str]):
    calls = []

    def action() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise NetworkError(errors[len(calls) - 1])

    return action, calls


def test_transient_ordering_failure_is_repeated_until_it_passes() -> None:
    action, calls = _flaky(["Error: got unexpected status: SERVICE_UNAVAILABLE -- no Raft leader"])
    _retry_transient("approve", action, timeout=30, nodes=[])
    assert len(calls) == 2


def test_other_failure_is_final_at_once() -> None:
    action, calls = _flaky(["Error: chaincode definition not agreed to by this org (ProviderMSP)"])
    with pytest.raises(NetworkError, match="not agreed"):
        _retry_transient("commit", action, timeout=30, nodes=[])
    assert len(calls) == 1


def test_done_if_accepts_an_earlier_attempt_that_got_through() -> None:
    action, calls = _flaky(["attempted to redefine uncommitted sequence (1) with unchanged content"])
    _retry_transient("approve", action, timeout=30, nodes=[], done_if=lambda e: "unchanged content" in str(e))
    assert len(calls) == 1
