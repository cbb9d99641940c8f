"""`hub.ledger.fabric.errors`: a failed gateway call becomes one ledger error, decided in one place. The
answers are the gateway's own (code + ErrorDetail messages as Fabric 3.1.5 peers word them)."""

from __future__ import annotations

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2

from hub.ledger.base import (
    ChaincodeRejected,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
)
from hub.ledger.fabric.errors import endorse_error, qscc_not_found, warming_up
from hub.ledger.fabric.rpcstatus import GatewayError

TX = "ab" * 32
NO_TX = f"Failed to get transaction with id {TX}, error no such transaction ID [{TX}] in index"
NO_BLOCK = "Failed to get block number 99, error no such block number [99] in index"
NO_BLOCK_OF_TX = f"Failed to get block for txID {TX}, error no such transaction ID [{TX}] in index"


def _error(
    code: grpc.StatusCode, *details: str, message: str = "evaluate call to endorser returned error"
) -> GatewayError:
    return GatewayError(
        code,
        message,
        [
            gateway_pb2.ErrorDetail(address=f"peer{i}:7051", msp_id="ProviderMSP", message=d)
            for i, d in enumerate(details)
        ],
    )


@pytest.mark.parametrize("text", [NO_TX, NO_BLOCK, NO_BLOCK_OF_TX])
@pytest.mark.parametrize(
    ("code", "prefix"),
    [(grpc.StatusCode.UNKNOWN, "chaincode response 500, "), (grpc.StatusCode.ABORTED, "")],
)
def test_qscc_not_in_index_is_ledger_not_found(code: grpc.StatusCode, prefix: str, text: str) -> None:
    error = endorse_error(_error(code, prefix + text), lookup=("transaction", TX))
    assert (
        isinstance(error, LedgerNotFound) and isinstance(error, KeyError) and isinstance(error, LedgerError)
    )
    assert (error.what, error.key) == ("transaction", TX)
    assert str(error) == f"transaction {TX} not found"


def test_not_found_only_for_a_lookup() -> None:
    """The same words from a call that is not a block/transaction look-up stay an endorsement failure."""
    assert isinstance(
        endorse_error(_error(grpc.StatusCode.UNKNOWN, "chaincode response 500, " + NO_TX)), EndorsementFailed
    )


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (
            grpc.StatusCode.UNKNOWN,
            ["chaincode response 500, " + NO_TX, "access denied for [GetTransactionByID]"],
        ),
        (
            grpc.StatusCode.UNKNOWN,
            ["chaincode response 500, Failed to get transaction with id x, error leveldb: closed"],
        ),
        (grpc.StatusCode.UNKNOWN, ["chaincode response 404, " + NO_TX]),  # not QSCC's status
        (grpc.StatusCode.UNAVAILABLE, [NO_TX]),  # a transport failure is never "not found"
        (grpc.StatusCode.UNKNOWN, []),
    ],
)
def test_anything_else_is_not_not_found(code: grpc.StatusCode, details: list[str]) -> None:
    error = endorse_error(_error(code, *details, message=""), lookup=("transaction", TX))
    assert not isinstance(error, LedgerNotFound)
    assert not qscc_not_found(code, details)


def test_refusals_unavailable_and_the_rest() -> None:
    refusal = 'chaincode response 404, {"code":"unknown_contract","message":"no contract c1","status":404}'
    rejected = endorse_error(_error(grpc.StatusCode.UNKNOWN, refusal), lookup=("transaction", TX))
    assert isinstance(rejected, ChaincodeRejected) and rejected.code == "unknown_contract"
    assert isinstance(
        endorse_error(_error(grpc.StatusCode.UNAVAILABLE, "connection refused")), LedgerUnavailable
    )
    assert isinstance(endorse_error(_error(grpc.StatusCode.DEADLINE_EXCEEDED)), LedgerUnavailable)
    assert isinstance(
        endorse_error(_error(grpc.StatusCode.PERMISSION_DENIED, "access denied")), EndorsementFailed
    )


def test_warming_up_is_discovery_not_ready() -> None:
    assert warming_up(_error(grpc.StatusCode.FAILED_PRECONDITION, message="no peer combination can satisfy"))
    assert warming_up(_error(grpc.StatusCode.UNAVAILABLE, "failed to find any endorsing peers"))
    assert not warming_up(_error(grpc.StatusCode.ABORTED, "no peer combination"))
    assert not warming_up(_error(grpc.StatusCode.UNAVAILABLE, "connection refused"))
