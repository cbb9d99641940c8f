"""A usage transaction the orderer refuses for its size (ADR 0069): the ingestor halves the batch until
each part fits, instead of retrying the same transaction and answering `503 ledger_conflict`. The ledger
here is a stand-in that refuses as Fabric's orderer does (the Fabric tier runs the real one:
tests/fabric/test_usage_max_messages_fabric.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from hub.billing.answers import MessageResult, UsageRecorded
from hub.ingest import Ingestor, _Pending
from hub.ledger.base import Commit, TransactionInvalid, TransactionTooLarge
from hub.metrics import Metrics

pytestmark = pytest.mark.unit

# what hub/ledger/fabric/commits.py raises for the orderer's BAD_REQUEST (as the gateway passed it on)
SIZE_REFUSAL = (
    "REJECTED_BY_ORDERER (ABORTED: received unsuccessful response from orderer: status=BAD_REQUEST, "
    "info=message payload is 11922949 bytes and exceeds maximum allowed 10485760 bytes)"
)


class Orderer:
    """record_usage that refuses more than `fits` messages per transaction, as the orderer refuses bytes."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[int] = []
        self.client = self

    def record_usage(self, messages: Sequence[Mapping[str, Any]], *, as_org: str) -> UsageRecorded:
        self.calls.append(len(messages))
        tx = f"tx{len(self.calls)}"
        if len(messages) > self.fits:
            raise TransactionTooLarge(tx, SIZE_REFUSAL)
        results = tuple(
            MessageResult(raw={}, message_id=m["message_id"], device_id=m["device_id"], status="accepted",
                          accepted=len(m["readings"]), duplicates=())
            for m in messages
        )
        return UsageRecorded(raw={}, commit=Commit(tx, len(self.calls), "VALID", b""), results=results,
                             accepted=sum(r.accepted for r in results), tx_id=tx)


def batch(n: int) -> list[_Pending]:
    return [
        _Pending((f"d{i % 4}", f"m{i}"), {"device_id": f"d{i % 4}", "message_id": f"m{i}",
                                         "readings": [{"id": f"r{i}-{j}"} for j in range(3)]}, "digest", "P")
        for i in range(n)
    ]


def test_only_a_size_refusal_splits_a_batch():
    """Any other invalid transaction (a read conflict) is retried as a whole, never split."""

    class Conflicts(Orderer):
        def record_usage(self, messages: Sequence[Mapping[str, Any]], *, as_org: str) -> UsageRecorded:
            self.calls.append(len(messages))
            raise TransactionInvalid(f"tx{len(self.calls)}", "MVCC_READ_CONFLICT")

    orderer = Conflicts(fits=0)
    ingestor = Ingestor(orderer, None, Metrics(), max_batch=500, max_readings=1000)  # type: ignore[arg-type]
    pending = batch(4)
    ingestor._process(pending, "P")
    assert orderer.calls == [4, 4, 4, 4]
    assert {p.future.result(0)[1]["code"] for p in pending} == {"ledger_conflict"}


def test_a_batch_the_orderer_refuses_for_size_is_split_until_every_message_commits():
    orderer = Orderer(fits=3)
    ingestor = Ingestor(orderer, None, Metrics(), max_batch=500, max_readings=1000)  # type: ignore[arg-type]
    ingestor._record = lambda records, answers: None  # type: ignore[method-assign]  # no database here
    pending = batch(10)
    ingestor._process(pending, "P")
    answers = [p.future.result(0) for p in pending]
    assert [status for status, _ in answers] == [202] * 10, answers
    assert all(body["accepted"] == 3 for _, body in answers)
    # 10 refused, halves of 5 refused, then parts of 2 and 3 commit: each message in exactly one commit
    assert orderer.calls == [10, 5, 2, 3, 5, 2, 3]


def test_a_single_message_refused_for_size_is_not_split():
    orderer = Orderer(fits=0)
    ingestor = Ingestor(orderer, None, Metrics(), max_batch=500, max_readings=1000)  # type: ignore[arg-type]
    pending = batch(1)
    ingestor._process(pending, "P")
    status, body = pending[0].future.result(0)
    assert (status, body["code"]) == (503, "ledger_conflict")
