"""The `Ledger`: how the hub reaches the chaincode, whichever ledger runs it (ADR 0058).

Shaped after fabric-gateway's client API: `evaluate` runs a query on one peer and returns its answer;
`submit` endorses, orders and waits for the commit, returning where the transaction landed; the same in two
steps is `endorse` (an `Endorsed` transaction, fabric-gateway's Proposal -> Transaction) then
`submit_endorsed` (-> `Commit`). `events` streams chaincode events from a block or a `Checkpoint`;
`height`, `block`, `block_header` and `tx` look the chain up for audit; `verify` checks the whole chain
where the hub can (the embedded ledger; a Fabric channel is verified by its own peers). The embedded
ledger and the Fabric gateway client both implement all of it, with the same signatures and the same
errors, and the hub code above never knows which one it has (tests/*/test_ledger_conformance*.py run one
suite against both). Each call names the org it acts for (`as_org`); the ledger picks that org's identity.

Errors: everything is a `LedgerError`. `ChaincodeRejected` (a business refusal, `.code`),
`EndorsementFailed`, `TransactionInvalid`, `LedgerUnavailable`, `CommitStatusUnknown`, `LedgerNotFound`
(an unknown block or transaction; also a `KeyError`, so callers written against `except KeyError` keep
working) and `LedgerUnsupported` (an operation this ledger does not offer).
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
class Checkpoint:
    """Where an event consumer is: the block and the transaction of the last event it handled.

    `ledger.events(cp.block, after_tx_id=cp.tx_id)` resumes right after that event: nothing missed,
    nothing twice (fabric-gateway's checkpointer). The empty checkpoint starts at block 0."""

    block: int = 0
    tx_id: str = ""

    @classmethod
    def after(cls, event: ChaincodeEvent) -> Checkpoint:
        return cls(event.block, event.tx_id)


@dataclass(frozen=True)
class Endorsed:
    """An endorsed transaction, ready to be submitted (`Ledger.submit_endorsed`): fabric-gateway's
    Proposal -> Transaction step. `result` is the chaincode's answer every endorser agreed on; `envelope`
    is the ledger's own form of it (embedded: the signed envelope bytes; Fabric: the prepared, not yet
    signed `common.Envelope`), opaque to the hub."""

    tx_id: str
    as_org: str
    result: bytes
    envelope: Any
    endorsers: tuple[str, ...] = ()

    @property
    def payload(self) -> bytes:
        """The name the embedded ledger's `PreparedTx` used for `result`."""
        return self.result

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as `(envelope, tx_id)`, the tuple Fabric's `endorse` used to return."""
        return iter((self.envelope, self.tx_id))


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


@dataclass(frozen=True)
class BlockHeader:
    """A block's header alone: what links a chain, without reading the block's transactions.
    `raw` is the header's exact bytes (embedded: canonical JSON; Fabric: the `common.BlockHeader`
    protobuf); `hash` is the block hash the next header's `previous_hash` names."""

    number: int
    previous_hash: bytes
    data_hash: bytes
    hash: bytes
    raw: bytes


@dataclass(frozen=True)
class VerifyProblem:
    """One finding of `Ledger.verify`, naming its block and, where it has one, its transaction."""

    check: str  # block_hash, hash_link, block_number, data_hash, metadata, tx_id, validation, state, genesis
    block: int | None
    tx_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"block {self.block}" if self.block is not None else "ledger"
        if self.tx_id:
            where += f" tx {self.tx_id}"
        return f"{self.check} at {where}: {self.detail}"


@dataclass
class VerifyReport:
    """`Ledger.verify`'s answer: what was checked and every problem found (none: `ok`)."""

    network_id: str
    blocks: int = 0
    transactions: int = 0
    valid_transactions: int = 0
    state_keys: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def failed_blocks(self) -> list[int]:
        return sorted({p.block for p in self.problems if p.block is not None})

    def failed_txs(self) -> list[str]:
        return sorted({p.tx_id for p in self.problems if p.tx_id})

    def summary(self) -> str:
        head = (
            f"network {self.network_id}: {self.blocks} blocks, {self.transactions} transactions "
            f"({self.valid_transactions} valid), {self.state_keys} state keys: "
        )
        if self.ok:
            return head + "OK"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems)


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

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (tests/helpers/multiproc.py)
        return type(self), (self.error,)

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

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.tx_id, self.status, self.block)


class TransactionTooLarge(TransactionInvalid):
    """The orderer refused the transaction for its size (the channel's `AbsoluteMaxBytes`): this transaction
    never commits, a smaller one may. A ledger without a size limit (embedded) never raises it."""


class LedgerNotFound(LedgerError, KeyError):
    """The ledger holds no such block or transaction (or no event checkpoint's transaction). Also a
    `KeyError`, the type `Ledger.tx` raised before this class existed, so `except KeyError` still works."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.what, self.key)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class LedgerUnsupported(LedgerError):
    """This ledger does not offer the operation (e.g. `verify` on Fabric: a channel is verified by its
    own peers, not by a client)."""


class LedgerUnavailable(LedgerError):
    """The ledger could not be reached before anything was submitted. Safe to retry."""

    retryable = True


class CommitStatusUnknown(LedgerError):
    """Submitted, but we do not know whether it committed (timeout, lost connection).
    Callers resolve it with `Ledger.tx(tx_id)` or an idempotent re-submit, never by assuming."""

    def __init__(self, tx_id: str, reason: str) -> None:
        super().__init__(f"commit status of {tx_id} unknown: {reason}")
        self.tx_id = tx_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.tx_id, self.reason)


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

    def endorse(
        self,
        fn: str,
        args: Args = (),
        *,
        as_org: str,
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] | None = None,
    ) -> Endorsed:
        """Endorse only (nothing is ordered): raises ChaincodeRejected / EndorsementFailed like `submit`.
        `endorsing_orgs` pins who endorses instead of the policy-derived set."""
        ...

    def submit_endorsed(self, endorsed: Endorsed) -> Commit:
        """Order an `endorse`d transaction and wait for its commit; VALID or TransactionInvalid. Submitting
        the same `Endorsed` again never applies it twice (the second copy is a DUPLICATE_TXID)."""
        ...

    def events(
        self,
        since_block: int = 0,
        *,
        timeout: float | None = None,
        after_tx_id: str = "",
        as_org: str | None = None,
    ) -> Iterator[ChaincodeEvent]:
        """Chaincode events from `since_block` on, in commit order, waiting for new ones; with a timeout,
        the iterator ends when no event arrived for that long. `after_tx_id` (a `Checkpoint`'s tx id)
        resumes right after that transaction's event: from its block, skipping it and what came before it
        there; LedgerNotFound if the ledger holds no such transaction. `as_org`: whose peer to listen on
        (one process holds every peer on the embedded ledger)."""
        ...

    def height(self, *, as_org: str | None = None) -> int:
        """Number of blocks (the next block's number), on `as_org`'s peer (default: the ledger's own)."""
        ...

    def block(self, number: int) -> BlockRecord:
        """Raises LedgerNotFound when the ledger has no such block."""
        ...

    def block_header(self, number: int) -> BlockHeader:
        """The header alone (cheaper than `block` where the ledger can); LedgerNotFound when unknown."""
        ...

    def tx(self, tx_id: str) -> TransactionRecord:
        """Raises LedgerNotFound (a KeyError) when unknown."""
        ...

    def verify(self) -> VerifyReport:
        """Check the whole chain from stored bytes (hashes, signatures, policies, replayed state);
        LedgerUnsupported where the ledger's own network does that (Fabric)."""
        ...

    def close(self) -> None: ...

