"""Fabric gateway errors as `hub.ledger.base` errors, decided in one place.

Callers of `FabricLedger` see only `LedgerError` subclasses; which one follows from the gRPC status code
the gateway answered and, where the code alone cannot tell, from the exact answers Fabric's own code
gives (quoted below with their source), never from loose matching spread over the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc

from hub.ledger.base import (
    ChaincodeRejected,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
)
from hub.ledger.fabric.rpcstatus import GatewayError

# Gateway answers while discovery is still warming up after a network start or a chaincode commit.
WARMUP_MARKERS = (
    "no peer combination",
    "no combination of peers",
    "discovery",
    "no endorsers found",
    "failed to find any endorsing peers",
)
# the gateway's words when the endorsing peers' answers differ (e.g. one read older state)
PAYLOADS_DIFFER = "ProposalResponsePayloads do not match"
# Validation codes of a transaction that was ordered but wrote nothing because what it read had changed by
# the time it committed: re-endorsing it as a new proposal is safe and usually succeeds.
STALE_READ_CODES = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})

# QSCC's answer for a block or transaction the peer's ledger does not hold: core/scc/qscc/query.go wraps
# the block index's error (common/ledger/blkstorage/blockindex.go: "no such block number [%d] in index",
# "no such transaction ID [%s] in index") as "Failed to get block number %d, error %s", "Failed to get
# transaction with id %s, error %s" or "Failed to get block for txID %s, error %s". QSCC answers with
# shim.Error (status 500), which the gateway (internal/pkg/gateway/apiutils.go responseStatus) reports as
# UNKNOWN "chaincode response 500, <message>" (what Fabric 3.1.5 peers answer, seen in the conformance
# suite), or as ABORTED with the bare message when the peer's response carries no payload; the message is
# in the ErrorDetail of each peer the gateway asked.
QSCC_NOT_FOUND = re.compile(
    r"^(?:chaincode response 500, )?"
    r"Failed to get (?:block number|transaction with id|block for txID) .*"
    r"error no such (?:block number|transaction ID) \[",
    re.DOTALL,
)
LOOKUP_CODES = (grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN)


def warming_up(ge: GatewayError) -> bool:
    """Discovery not ready yet (after a network start or a chaincode commit): worth polling."""
    return ge.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE) and any(
        ge.mentions(m) for m in WARMUP_MARKERS
    )


def qscc_not_found(code: grpc.StatusCode | None, texts: Iterable[str]) -> bool:
    """True when a QSCC look-up failed because the ledger holds no such block or transaction: the status
    is the gateway's for a peer-side 500 (or None for an answer carried in the response) and every peer
    that answered said "no such ... in index"."""
    if code is not None and code not in LOOKUP_CODES:
        return False
    answers = [t for t in texts if t]
    return bool(answers) and all(QSCC_NOT_FOUND.search(t) for t in answers)


def endorse_error(ge: GatewayError, *, lookup: tuple[str, object] | None = None) -> LedgerError:
    """Map a failed Evaluate/Endorse (nothing was submitted) to the ledger error classes. `lookup`:
    (what, key) of a QSCC block/transaction look-up, whose "not in the index" answer is LedgerNotFound."""
    if lookup is not None:
        texts = [d.message for d in ge.details] or [ge.message]
        if qscc_not_found(ge.code, texts):
            return LedgerNotFound(*lookup)
    refusal = ge.chaincode_error()
    if refusal is not None:
        return ChaincodeRejected(refusal)
    if ge.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return LedgerUnavailable(str(ge))
    return EndorsementFailed(str(ge))
