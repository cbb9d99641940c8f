"""The `Ledger`: how the hub reaches the chaincode, whichever ledger runs it.

Shaped after fabric-gateway's client API: `evaluate` runs a query on one peer and returns its answer;
`submit` endorses, orders and waits for the commit, returning where the transaction landed. The embedded
ledger and the Fabric gateway client both implement it, and the hub code above never knows which one it has.
Each call names the org it acts for (`as_org`); the ledger picks that org's identity (its `Signer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chaincode.errors import ChaincodeError

Args = Sequence[str | bytes]


@dataclass(frozen=True)
class Commit:
    """A committed transaction: id, block, validation code and the chaincode's answer."""

    tx_id: str
    block: int
    status: str  # "VALID" or Fabric's validation code name, e.g. "MVCC_READ_CONFLICT"
    payload: bytes

    @property
    def valid(self) -> bool:
        return self.status == "VALID"


@dataclass(frozen=True)
class ChaincodeEvent:
    """One chaincode event (Fabric allows one per transaction), with where it was committed."""

    block: int
    tx_id: str
    name: str
    payload: bytes


@dataclass(frozen=True)
class Endorsement:
    msp_id: str
    certificate: bytes  # PEM
    signature: bytes  # DER ECDSA over SHA-256 of the signed bytes


@dataclass(frozen=True)
class TransactionRecord:
    """A transaction as audit tools see it, on either ledger."""

    tx_id: str
    block: int
    index: int
    status: str
    timestamp: dt.datetime
    creator_msp_id: str
    creator_cert: bytes
    function: str
    args: list[bytes]
    response: bytes
    event: ChaincodeEvent | None
    endorsements: list[Endorsement]
    # implementation-specific evidence: for the embedded ledger the signed proposal response bytes and
    # read-write set; for Fabric the raw Envelope protobuf. Audit code reads it through the ledger's own
    # verifier, never by guessing.
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockRecord:
    number: int
    previous_hash: bytes
    data_hash: bytes
    hash: bytes
    tx_ids: list[str]
    raw: Mapping[str, Any] = field(default_factory=dict)


# --- errors ------------------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of everything a ledger call can raise."""

    retryable: bool = False


class ChaincodeRejected(LedgerError):
    """The chaincode refused the transaction (a business rule): retrying would refuse again. The exception
    is a refusal with a 5xx status (`tx_timestamp_skew`, ADR 0027): it is about the endorser's state, not
    the request, and the same request succeeds later (`retryable`)."""

    def __init__(self, error: ChaincodeError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error

    @property  # type: ignore[override]
    def retryable(self) -> bool:
        return self.error.status >= 500

    @property
    def code(self) -> str:
        return self.error.code


class EndorsementFailed(LedgerError):
    """Endorsement could not be gathered or did not satisfy the policy (peer-side, not a business rule)."""


class TransactionInvalid(LedgerError):
    """Ordered but marked invalid at commit (e.g. MVCC_READ_CONFLICT). Safe to re-submit as a new proposal."""

    retryable = True

    def __init__(self, tx_id: str, status: str, block: int | None = None) -> None:
        super().__init__(f"transaction {tx_id} invalid: {status}")
        self.tx_id = tx_id
        self.status = status
        self.block = block


class LedgerUnavailable(LedgerError):
    """The ledger could not be reached before anything was submitted. Safe to retry."""

    retryable = True


class CommitStatusUnknown(LedgerError):
    """Submitted, but we do not know whether it committed (timeout, lost connection).
    Callers resolve it with `Ledger.tx(tx_id)` or an idempotent re-submit, never by assuming."""

    def __init__(self, tx_id: str, reason: str) -> None:
        super().__init__(f"commit status of {tx_id} unknown: {reason}")
        self.tx_id = tx_id


# --- the protocol ----------------------------------------------------------------------------


@runtime_checkable
class Ledger(Protocol):
    @property
    def network_id(self) -> str:
        """The ledger's identity for proofs: channel id for Fabric, the embedded network's id otherwise."""
        ...

    def evaluate(self, fn: str, args: Args = (), *, as_org: str) -> bytes:
        """Run a query transaction; raises ChaincodeRejected for a refusal."""
        ...

    def submit(
        self, fn: str, args: Args = (), *, as_org: str, transient: Mapping[str, bytes] | None = None
    ) -> Commit:
        """Endorse, order and commit; returns only once committed as VALID, else raises."""
        ...

    def events(self, since_block: int = 0, *, timeout: float | None = None) -> Iterator[ChaincodeEvent]:
        """Chaincode events from `since_block` on, in commit order, waiting for new ones; with a timeout,
        the iterator ends when no event arrived for that long. Resume with the last block seen + 1 ...
        or with the same block, skipping tx ids already handled."""
        ...

    def height(self) -> int:
        """Number of blocks (the next block's number)."""
        ...

    def block(self, number: int) -> BlockRecord: ...

    def tx(self, tx_id: str) -> TransactionRecord:
        """Raises KeyError when unknown."""
        ...

    def close(self) -> None: ...
