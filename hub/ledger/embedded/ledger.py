"""`EmbeddedLedger`: the whole permissioned network in one process, behind the `Ledger` protocol.

Each org of the network is a peer identity (its injected `Signer`); a transaction is proposed by the
acting org, simulated by every org whose endorsement the policies need (each run is independent and must
produce the same response bytes), ordered by one committer thread into hash-chained blocks, validated
(signatures, policies, MVCC) and committed to SQLite. See ADR 0004 for the design and ADR 0005 for the
identity and storage choices.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from chaincode.clock import DEFAULT_MAX_SKEW, ClockBound, system_clock
from hub.keys.signer import Signer, sign_bytes
from hub.ledger.base import (
    Args,
    BlockHeader,
    BlockRecord,
    ChaincodeEvent,
    ChaincodeRejected,
    Commit,
    CommitStatusUnknown,
    Endorsed,
    Endorsement,
    EndorsementFailed,
    LedgerNotFound,
    LedgerUnavailable,
    TransactionInvalid,
    TransactionRecord,
    VerifyReport,
)

from .blocks import Header
from .codec import DecodeError, sha256
from .committer import Committer, CommitterClosed, TxResult
from .endorsement import Chaincode, required_orgs, simulate
from .identity import TrustStore
from .memo import MemoReader, policy_of
from .network import Identities, create_genesis, load_genesis
from .rwset import Entry
from .simulator import Reader
from .store import StateReader, Store
from .transaction import EndorsementSig, Envelope, ParsedTx, Proposal, Response
from .validator import BlockValidator

DB_FILE = "ledger.sqlite"
CA_DIR = "embedded-ca"
LOCK_FILE = "ledger.lock"


PreparedTx = Endorsed  # the name `endorse`'s answer had before the Ledger interface defined it

def _default_chaincode(clock_bound: ClockBound | None) -> Chaincode:
    try:
        from chaincode.contract import bounded  # optional until the contract exists
    except ImportError as exc:  # pragma: no cover - depends on the tree
        raise LedgerUnavailable(f"chaincode.contract is not available: {exc}") from exc
    return bounded(clock_bound)


class EmbeddedLedger:
    def __init__(
        self,
        data_dir: Path | str,
        signers: Mapping[str, Signer],
        *,
        chaincode: Chaincode | None = None,
        chaincode_orgs: Sequence[str] | None = None,
        chaincode_name: str = "billing",
        network_id: str | None = None,
        ca_certs: Mapping[str, Sequence[x509.Certificate]] | None = None,
        block_max_txs: int = 500,
        block_timeout: float = 0.005,
        commit_timeout: float = 60.0,
        synchronous: str = "FULL",
        clock: Callable[[], dt.datetime] | None = None,
        max_clock_skew: dt.timedelta | None = DEFAULT_MAX_SKEW,
        endorser_clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        """`clock` is the gateway's clock, which stamps proposals (the client's choice, as in Fabric);
        `endorser_clock` (default: the same clock, one process) is what the peers compare a proposal's
        timestamp with: the contract refuses a transaction further than `max_clock_skew` from it
        (`tx_timestamp_skew`, ADR 0027; None turns the check off). Both apply to the default contract; an
        injected `chaincode` runs as given."""
        if not signers:
            raise ValueError("the embedded ledger needs at least one org signer")
        self._data_dir = Path(data_dir)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._signers = dict(signers)
        self._commit_timeout = commit_timeout
        # the proposal timestamp (the chaincode's only clock) comes from the client, as in Fabric
        self._clock = clock or system_clock
        bound = None if max_clock_skew is None else ClockBound(max_clock_skew, endorser_clock or self._clock)
        self._chaincode = chaincode or _default_chaincode(bound)
        self._closed = False
        self._tip = threading.Condition()
        self._lock_file = _lock_directory(self._data_dir)
        try:
            self.store = Store(self._data_dir / DB_FILE, synchronous=synchronous)
        except BaseException:
            self._lock_file.close()
            raise
        try:
            if self.store.block_row(0) is None:
                self.genesis = create_genesis(
                    self.store,
                    self._data_dir / CA_DIR,
                    self._signers,
                    network_id=network_id,
                    chaincode_orgs=chaincode_orgs or sorted(self._signers),
                    chaincode_name=chaincode_name,
                    ca_certs=ca_certs or {},
                )
            else:
                self.genesis = load_genesis(self.store, network_id)
            self.trust = TrustStore(self.genesis.orgs)
            self._identities = Identities(
                self.store, self._data_dir / CA_DIR, self.genesis, self.trust, self._signers
            )
            height = self.store.height()
            last = self.store.block_row(height - 1)
            assert last is not None
            self._validator = BlockValidator(self.genesis.network_id, self.trust, self.genesis.chaincode_orgs)
            self._committer = Committer(
                self.store,
                self._validator,
                height=height,
                last_hash=last[1],
                max_txs=block_max_txs,
                timeout=block_timeout,
                on_commit=self._committed,
            )
        except BaseException:
            self.store.close()
            self._lock_file.close()
            raise

    # --- Ledger protocol -------------------------------------------------------------------------
    @property
    def network_id(self) -> str:
        return self.genesis.network_id

    def certificate(self, org: str) -> bytes:
        """PEM certificate the ledger currently uses for `org` (creator and endorser identity)."""
        return self._identities.get(org)[0]

    def evaluate(
        self, fn: str, args: Args = (), *, as_org: str, timestamp: dt.datetime | None = None
    ) -> bytes:
        """`timestamp`: the proposal timestamp this client chooses (default: the gateway's clock)."""
        self._check_open()
        proposal = self._proposal(fn, args, as_org, self._identities.get(as_org)[0], timestamp)
        try:
            with self.snapshot() as reader:
                return simulate(self._chaincode, reader, proposal, proposal.encode()).payload
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"embedded ledger storage: {exc}") from exc

    def submit(
        self,
        fn: str,
        args: Args = (),
        *,
        as_org: str,
        transient: Mapping[str, bytes] | None = None,
        timestamp: dt.datetime | None = None,
    ) -> Commit:
        """`timestamp`: the proposal timestamp this client chooses (default: the gateway's clock)."""
        return self.submit_endorsed(
            self.endorse(fn, args, as_org=as_org, transient=transient, timestamp=timestamp)
        )

    def submit_endorsed(self, endorsed: Endorsed) -> Commit:
        """Order one endorsed transaction and wait for its validation. A second copy of a committed one is
        stored as DUPLICATE_TXID and changes nothing; the answer is then the first copy's commit, as
        Fabric's commit status (by tx id) gives it."""
        result = self.order([endorsed.envelope])[0]
        if result.status == "DUPLICATE_TXID":
            first = self.store.find_tx(result.tx_id)  # the VALID occurrence if there is one
            if first is not None and first[2] == "VALID":
                return Commit(result.tx_id, first[0], "VALID", endorsed.result)
        if result.status != "VALID":
            raise TransactionInvalid(result.tx_id, result.status, result.block)
        return Commit(result.tx_id, result.block, result.status, endorsed.result)

    def events(
        self,
        since_block: int = 0,
        *,
        timeout: float | None = None,
        after_tx_id: str = "",
        as_org: str | None = None,
    ) -> Iterator[ChaincodeEvent]:
        """Every org's peer is in this process: `as_org` changes nothing. `after_tx_id` resumes from
        that transaction's block, after it (as Fabric's gateway does)."""
        position = (since_block, -1)
        if after_tx_id:
            found = self.store.find_tx(after_tx_id)
            if found is None:
                raise LedgerNotFound("transaction", after_tx_id)
            position = (found[0], found[1])
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            height = self._committer.height
            try:
                rows = self.store.events_after(*position)
            except sqlite3.Error:
                if self._closed:
                    return  # closed under us: the stream ends like on close()
                raise
            if rows:
                for block, idx, tx_id, name, payload in rows:
                    position = (block, idx)
                    yield ChaincodeEvent(block, tx_id, name, payload)
                deadline = None if timeout is None else time.monotonic() + timeout
                continue
            with self._tip:
                while self._committer.height == height and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._tip.wait(remaining)

    def height(self, *, as_org: str | None = None) -> int:
        return self._committer.height

    def block(self, number: int) -> BlockRecord:
        row = self.store.block_row(number)
        if row is None:
            raise LedgerNotFound("block", number)
        header_bytes, block_hash, metadata, config = row
        header = Header.decode(header_bytes)
        txs = self.store.block_txs(number)
        raw: dict[str, Any] = {
            "header": header_bytes,
            "metadata": metadata,
            "tx_hashes": [sha256(env) for _, _, _, env in txs],
            "validation": [status for _, _, status, _ in txs],
        }
        if config is not None:
            raw["config"] = config
        return BlockRecord(
            number, header.previous_hash, header.data_hash, block_hash, [t for _, t, _, _ in txs], raw
        )

    def block_header(self, number: int) -> BlockHeader:
        """The stored header row alone: no envelope of the block is read or hashed."""
        row = self.store.block_row(number)
        if row is None:
            raise LedgerNotFound("block", number)
        header = Header.decode(row[0])
        return BlockHeader(number, header.previous_hash, header.data_hash, row[1], row[0])

    def tx(self, tx_id: str) -> TransactionRecord:
        found = self.store.find_tx(tx_id)
        if found is None:
            raise LedgerNotFound("transaction", tx_id)
        block, index, status, envelope = found
        parsed = ParsedTx.parse(envelope)
        prop, resp = parsed.proposal, parsed.response
        event = None
        if resp.event is not None:
            event = ChaincodeEvent(block, prop.tx_id, resp.event[0], resp.event[1])
        return TransactionRecord(
            tx_id=prop.tx_id,
            block=block,
            index=index,
            status=status,
            timestamp=prop.datetime(),
            creator_msp_id=prop.creator_msp_id,
            creator_cert=prop.creator_cert,
            function=prop.fn,
            args=list(prop.args),
            response=resp.payload,
            event=event,
            endorsements=[Endorsement(e.msp_id, e.cert, e.signature) for e in parsed.envelope.endorsements],
            raw={
                "format": "embedded/1",
                "network_id": self.network_id,
                "envelope": envelope,
                "tx_hash": sha256(envelope),
                "proposal": parsed.envelope.proposal_bytes,
                "creator_signature": parsed.envelope.creator_signature,
                "response": parsed.envelope.response_bytes,
                "rwset": resp.rwset.to_json(),
            },
        )

    def verify(self) -> VerifyReport:
        """Replay the whole chain from stored bytes (`hub.ledger.embedded.verify`)."""
        from .verify import verify_ledger

        return verify_ledger(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        with self._tip:
            self._tip.notify_all()
        self.store.close()
        self._lock_file.close()

    def __enter__(self) -> EmbeddedLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def endorse(
        self,
        fn: str,
        args: Args = (),
        *,
        as_org: str,
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] | None = None,
        timestamp: dt.datetime | None = None,
    ) -> Endorsed:
        """Simulate on every needed org's peer, compare, collect signatures. `endorsing_orgs` overrides
        the policy-derived set (tests use it to build under-endorsed transactions); `timestamp` is the
        proposal timestamp the client chooses (default: the gateway's clock)."""
        self._check_open()
        cert, signer = self._identities.get(as_org)
        proposal = self._proposal(fn, args, as_org, cert, timestamp)
        proposal_bytes = proposal.encode()
        creator_signature = sign_bytes(signer, proposal_bytes)
        try:
            orgs, first, responses = self._simulate_all(
                proposal, proposal_bytes, as_org, transient, endorsing_orgs
            )
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"embedded ledger storage: {exc}") from exc
        response_bytes = first.encode()
        for org, response in responses.items():
            if response is not first and response.encode() != response_bytes:
                raise EndorsementFailed(f"peer of {org} produced a different response for {proposal.tx_id}")
        endorsements = []
        for org in orgs:
            org_cert, org_signer = self._identities.get(org)
            endorsements.append(EndorsementSig(org, org_cert, sign_bytes(org_signer, response_bytes)))
        envelope = Envelope(proposal_bytes, creator_signature, response_bytes, tuple(endorsements)).encode()
        return Endorsed(proposal.tx_id, as_org, first.payload, envelope, tuple(orgs))

    # --- beyond the protocol: ordering a batch of envelopes into one block -------------------------
    def order(self, envelopes: Sequence[bytes]) -> list[TxResult]:
        """Order envelopes into one block (together) and wait for their validation results."""
        try:
            futures = self._committer.enqueue(envelopes)
        except CommitterClosed as exc:
            raise LedgerUnavailable(str(exc)) from exc
        results: list[TxResult] = []
        for env, future in zip(envelopes, futures, strict=True):
            try:
                results.append(future.result(timeout=self._commit_timeout))
            except FutureTimeout as exc:
                raise CommitStatusUnknown(_tx_id_of(env), "no commit within the timeout") from exc
            except Exception as exc:
                raise CommitStatusUnknown(_tx_id_of(env), f"commit failed: {exc}") from exc
        return results

    def state(self) -> Iterator[tuple[str, Entry]]:
        """Current world state in key order (for verification and tests)."""
        return self.store.all_state()

    # --- internals -------------------------------------------------------------------------------
    def _simulate_all(
        self,
        proposal: Proposal,
        proposal_bytes: bytes,
        as_org: str,
        transient: Mapping[str, bytes] | None,
        endorsing_orgs: Sequence[str] | None,
    ) -> tuple[list[str], Response, dict[str, Response]]:
        """Simulate as the submitter's peer, derive the endorsing orgs from the committed policies of the
        written keys, and let each other org's peer simulate too, all on one snapshot."""
        with self.snapshot() as snapshot:
            # one snapshot, so what the first simulation read (every reading key of a RecordUsage batch)
            # need not be fetched again for the policy lookup of the written keys or by other peers' runs
            reader = MemoReader(snapshot)
            first = simulate(self._chaincode, reader, proposal, proposal_bytes, transient)
            if endorsing_orgs is None:
                keys = first.rwset.written_keys()
                entries = dict(zip(keys, reader.get_many(keys), strict=True))
                orgs = required_orgs(
                    as_org,
                    self.genesis.chaincode_orgs,
                    first.rwset,
                    lambda k: policy_of(entries, k),
                    self._signers,
                )
            else:
                orgs = list(dict.fromkeys(endorsing_orgs))
            responses: dict[str, Response] = {}
            for org in orgs:
                responses[org] = (
                    first if not responses else self._simulate_as(org, reader, proposal, transient)
                )
        return orgs, first, responses

    def _simulate_as(
        self, org: str, reader: Reader, proposal: Proposal, transient: Mapping[str, bytes] | None
    ) -> Response:
        """The `org` peer's own, independent run of the proposal."""
        try:
            return simulate(self._chaincode, reader, proposal, proposal.encode(), transient)
        except ChaincodeRejected as exc:
            raise EndorsementFailed(f"peer of {org} refused what another peer endorsed: {exc}") from exc

    def _proposal(
        self, fn: str, args: Args, as_org: str, cert: bytes, timestamp: dt.datetime | None = None
    ) -> Proposal:
        encoded = [a.encode("utf-8") if isinstance(a, str) else bytes(a) for a in args]
        if timestamp is not None and timestamp.tzinfo is None:
            raise ValueError("a proposal timestamp must be timezone-aware")
        return Proposal.new(self.network_id, fn, encoded, as_org, cert, timestamp or self._clock())

    @contextmanager
    def snapshot(self) -> Iterator[StateReader]:
        """A consistent read view of committed state (and of blocks, on this thread) until exit.
        Nested use on one thread shares the outer snapshot."""
        conn = self.store.conn()
        if conn.in_transaction:
            yield StateReader(conn)
            return
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT 1 FROM blocks LIMIT 1").fetchone()  # a read pins the snapshot now
            yield StateReader(conn)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _committed(self, number: int) -> None:
        with self._tip:
            self._tip.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerUnavailable("ledger is closed")


def _lock_directory(data_dir: Path) -> IO[bytes]:
    """One committer per ledger: a second open of the same directory (another process or another instance
    in this one) would fork the chain, so it is refused while the first holds the lock."""
    handle = (data_dir / LOCK_FILE).open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise LedgerUnavailable(f"embedded ledger at {data_dir} is open elsewhere") from exc
    return handle


def _tx_id_of(envelope: bytes) -> str:
    try:
        return Proposal.decode(Envelope.decode(envelope).proposal_bytes).tx_id
    except DecodeError:
        return "unparsed-" + sha256(envelope).hex()
