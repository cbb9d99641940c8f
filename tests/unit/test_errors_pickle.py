"""Ledger and chaincode errors cross process boundaries (the multi-process fault tests hand them back from
worker processes by pickling, tests/helpers/multiproc.py): each one arrives as the same class with the same
fields. Exceptions whose __init__ takes other arguments than their message did not unpickle before."""

from __future__ import annotations

import pickle

import pytest

from chaincode.errors import ChaincodeError
from hub.billing.answers import AnswerShapeError
from hub.ledger.base import (
    ChaincodeRejected,
    CommitStatusUnknown,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    TransactionInvalid,
)
from hub.ledger.fabric.rpcstatus import OrdererUnavailable

pytestmark = pytest.mark.unit

REFUSAL = ChaincodeError("duplicate_reading", "reading r1 already recorded", reading_ids=["r1"], tx_id="t0")
ERRORS = [
    REFUSAL,
    ChaincodeRejected(REFUSAL),
    TransactionInvalid("tx1", "MVCC_READ_CONFLICT", 12),
    CommitStatusUnknown("tx2", "deadline exceeded"),
    LedgerNotFound("transaction", "tx3"),
    AnswerShapeError("Invoice", "missing key 'total'"),
    LedgerUnavailable("peer down"),
    EndorsementFailed("policy not met"),
    LedgerError("odd"),
    OrdererUnavailable("orderer gone"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_with_its_fields(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    fields = {k: v for k, v in vars(error).items() if k != "error"}
    assert {k: v for k, v in vars(copy).items() if k != "error"} == fields
    if isinstance(error, ChaincodeRejected):
        assert (copy.code, copy.error.details, copy.retryable) == (error.code, error.error.details,
                                                                   error.retryable)
