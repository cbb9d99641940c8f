"""`FabricLedger`: the hub's `Ledger` over the Fabric Gateway gRPC service.

Flow of a submit (as fabric-gateway's own client): build and sign a proposal → Endorse (the gateway runs
it on enough peers to satisfy the chaincode and key-level policies) → sign the prepared transaction →
Submit (the gateway hands it to the orderer) → signed CommitStatus (blocks until the transaction is in a
block) → `Commit`. Errors become `hub.ledger.base` errors so callers know what is safe to retry:
nothing is retried automatically after Submit was attempted, because only the commit status can tell
whether it landed (`CommitStatusUnknown`).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

from chaincode.errors import ChaincodeError
from hub.ledger.base import (
    Args,
    BlockRecord,
    ChaincodeEvent,
    ChaincodeRejected,
    Commit,
    CommitStatusUnknown,
    EndorsementFailed,
    LedgerError,
    LedgerUnavailable,
    TransactionInvalid,
    TransactionRecord,
)
from hub.ledger.fabric import records
from hub.ledger.fabric.heights import PeerHeights
from hub.ledger.fabric.identity import FabricIdentity
from hub.ledger.fabric.rpcstatus import GatewayError, OrdererUnavailable, gateway_error, orderer_refused
from hub.ledger.fabric.txbuild import (
    build_proposal,
    chaincode_events_request,
    commit_status_request,
    sign_envelope,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 120_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", 100 * 1024 * 1024),
    ("grpc.max_send_message_length", 100 * 1024 * 1024),
]
# Gateway answers while discovery is still warming up after a network start or a chaincode commit.
WARMUP_MARKERS = (
    "no peer combination",
    "no combination of peers",
    "discovery",
    "no endorsers found",
    "failed to find any endorsing peers",
)
_END = object()


class InsecureGateway(LedgerError, ValueError):
    """A gateway endpoint without a TLS root, and plaintext was not explicitly allowed."""


# Validation codes of a transaction that was ordered but wrote nothing because what it read had changed by
# the time it committed: re-endorsing it as a new proposal is safe and usually succeeds.
STALE_READ_CODES = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
STALE_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class GatewayEndpoint:
    """One peer's gateway: address host:port and the TLS root that authenticates it.

    Plaintext only when asked for by name (`insecure=True`): a missing TLS root used to fall back to
    plaintext silently, so a typo in a setting sent signed proposals, and the answers the hub trusts,
    over an unauthenticated channel."""

    address: str
    tls_root_pem: bytes | None = None
    server_name: str | None = None  # TLS name override when the address is not in the cert's SANs
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.tls_root_pem is None and not self.insecure:
            raise InsecureGateway(
                f"gateway {self.address}: no TLS root certificate; set one (LEDGERHUB_FABRIC_TLS_ROOT or "
                "the peer's tls_root_cert in network.json), or allow plaintext explicitly "
                "(LEDGERHUB_FABRIC_INSECURE=1)"
            )


@dataclass(frozen=True)
class Timeouts:
    evaluate: float = 30.0
    endorse: float = 30.0
    submit: float = 30.0
    commit: float = 60.0
    warmup: float = 120.0  # how long to keep polling while discovery warms up ("no peer combination")
    unavailable: float = 10.0  # how long to keep retrying an unreachable gateway before giving up
    # waiting for a commit longer than this, the same signed transaction is submitted again: it finds out
    # whether the orderer is still there (ADR 0038) and re-orders a transaction a crashed orderer lost
    # (the peers keep the first copy of a tx id and mark any later one DUPLICATE_TXID)
    commit_probe: float = 5.0


# the gateway's words when the endorsing peers' answers differ (e.g. one read older state)
PAYLOADS_DIFFER = "ProposalResponsePayloads do not match"


class FabricLedger:
    """`hub.ledger.base.Ledger` on a Fabric channel. One identity and gateway per org it acts for."""

    def __init__(
        self,
        *,
        channel: str,
        chaincode: str,
        identities: Mapping[str, FabricIdentity],
        gateways: Mapping[str, GatewayEndpoint],
        default_org: str | None = None,
        timeouts: Timeouts | None = None,
        max_in_flight: int = 400,
    ) -> None:
        """`max_in_flight` caps this client's concurrent gateway calls below the gateway's own limit
        (`peer.limits.concurrency.gatewayService`, 500 in our network), which would refuse the excess."""
        if not identities:
            raise ValueError("at least one org identity is needed")
        self.channel = channel
        self.chaincode = chaincode
        self._identities = dict(identities)
        self._endpoints = dict(gateways)
        self._default_org = default_org or next(iter(self._identities))
        self.timeouts = timeouts or Timeouts()
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._heights = PeerHeights(lambda org: self.height(as_org=org))  # read-your-writes across orgs
        # event polls that read to the chain's end: (org, since block, after tx) -> height then (ADR 0038)
        self._drained: dict[tuple[str, int, str], tuple[int, tuple[ChaincodeEvent, ...]]] = {}

    # --- plumbing ---------------------------------------------------------------------------------
    @property
    def network_id(self) -> str:
        return self.channel

    def identity(self, org: str) -> FabricIdentity:
        try:
            return self._identities[org]
        except KeyError:
            raise LedgerError(f"no identity for org {org!r}") from None

    def _gateway(self, org: str) -> gateway_pb2_grpc.GatewayStub:
        endpoint = (
            self._endpoints.get(org) or self._endpoints.get("*") or next(iter(self._endpoints.values()))
        )
        with self._lock:
            channel = self._channels.get(endpoint.address + "|" + org)
            if channel is None:
                channel = _open_channel(endpoint)
                self._channels[endpoint.address + "|" + org] = channel
        return gateway_pb2_grpc.GatewayStub(channel)

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def _rpc(self, call: Callable[[], T]) -> T:
        with self._slots:
            return call()

    def _poll(self, attempt: Callable[[], T], what: str) -> T:
        """Retry `attempt` while the gateway is unavailable or still warming up (backoff, bounded)."""
        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                return self._rpc(attempt)
            except grpc.RpcError as err:
                ge = gateway_error(err)
                warming = ge.code in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.UNAVAILABLE,
                ) and any(ge.mentions(m) for m in WARMUP_MARKERS)
                if warming:
                    budget = self.timeouts.warmup
                elif ge.code == grpc.StatusCode.UNAVAILABLE:
                    budget = self.timeouts.unavailable
                else:
                    raise
                if ge.chaincode_error() is not None or time.monotonic() + delay > start + budget:
                    raise
                log.info("%s: gateway not ready (%s), retrying", what, ge.code.name)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # --- evaluate ---------------------------------------------------------------------------------
    def evaluate(self, fn: str, args: Args = (), *, as_org: str) -> bytes:
        """Read-your-writes for queries too: the acting org's peer is first brought up to this client's last
        commit, so a customer reading the contract the provider just proposed (through the provider's
        gateway) does not get `unknown_contract` from a peer one block behind."""
        self._heights.catch_up(as_org, self.timeouts.commit)
        return self._evaluate(self.chaincode, fn, args, as_org)

    def _evaluate(self, chaincode: str, fn: str, args: Args, org: str) -> bytes:
        identity = self.identity(org)
        proposal = build_proposal(identity, self.channel, chaincode, fn, args)  # stamped with our clock
        request = gateway_pb2.EvaluateRequest(
            transaction_id=proposal.tx_id, channel_id=self.channel, proposed_transaction=proposal.signed
        )
        gateway = self._gateway(org)
        try:
            response = self._poll(
                lambda: gateway.Evaluate(request, timeout=self.timeouts.evaluate), "evaluate"
            )
        except grpc.RpcError as err:
            raise endorse_error(gateway_error(err)) from None
        result = response.result
        if result.status >= 400:
            # a gateway that passes the chaincode's error response through (instead of an RPC error) still
            # carries the contract's refusal: it is the same ChaincodeRejected as on the RPC-error path
            refusal = ChaincodeError.from_json(result.message)
            if refusal is not None:
                raise ChaincodeRejected(refusal)
            raise EndorsementFailed(f"evaluate returned status {result.status}: {result.message}")
        return result.payload

    # --- submit -----------------------------------------------------------------------------------
    def submit(
        self,
        fn: str,
        args: Args = (),
        *,
        as_org: str,
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] | None = None,
        timestamp: dt.datetime | None = None,
    ) -> Commit:
        """`endorsing_orgs` pins who endorses (the gateway then does not complete the policy itself):
        for private data, and for tests that show an under-endorsed transaction is invalidated.

        Before endorsing, the acting org's peer is brought up to the height of this client's last commit
        (read-your-writes when orgs take turns). A transaction invalidated for a stale read wrote nothing,
        so it is endorsed again as a new proposal (new tx id), up to STALE_READ_ATTEMPTS times; the
        contract's functions are idempotent, so a second endorsement cannot apply anything twice."""
        attempt = 1
        while True:
            self._heights.catch_up(as_org, self.timeouts.commit)
            try:
                envelope, tx_id = self.endorse(
                    fn,
                    args,
                    as_org=as_org,
                    transient=transient,
                    endorsing_orgs=endorsing_orgs,
                    timestamp=timestamp,
                )
            except (ChaincodeRejected, EndorsementFailed) as err:
                # Another org's peer endorses too (both-party functions) and may be a block behind this
                # client's last commit: it then refuses on state it does not hold yet ("unknown_invoice"),
                # or answers from that older state, which the gateway reports as "ProposalResponsePayloads
                # do not match". A refused proposal wrote nothing, so bring every peer up and ask once more.
                if isinstance(err, EndorsementFailed) and PAYLOADS_DIFFER not in str(err):
                    raise
                if not self._heights.catch_up_others(self._identities, as_org, self.timeouts.commit):
                    if PAYLOADS_DIFFER not in str(err):
                        raise
                    # nobody lagged behind this client: a block committed by someone else (a chaincode
                    # definition during an upgrade, ADR 0063) reached one endorser first; level the peers
                    self._heights.level(self._identities, self.timeouts.commit)
                log.info("%s: endorsers disagreed or refused (%s), endorsing again", fn, str(err)[:120])
                envelope, tx_id = self.endorse(
                    fn,
                    args,
                    as_org=as_org,
                    transient=transient,
                    endorsing_orgs=endorsing_orgs,
                    timestamp=timestamp,
                )
            try:
                return self.submit_prepared(envelope, tx_id, as_org=as_org)
            except TransactionInvalid as err:
                if err.status not in STALE_READ_CODES or attempt >= STALE_READ_ATTEMPTS:
                    raise
                log.info("%s %s invalidated (%s), endorsing again", fn, tx_id, err.status)
                attempt += 1

    def endorse(
        self,
        fn: str,
        args: Args = (),
        *,
        as_org: str,
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] | None = None,
        timestamp: dt.datetime | None = None,
    ) -> tuple[common_pb2.Envelope, str]:
        """Endorse only: the prepared (unsigned) transaction envelope and its tx id. `timestamp` is the
        proposal timestamp this client chooses (default: now), as any Fabric client may."""
        identity = self.identity(as_org)
        proposal = build_proposal(
            identity, self.channel, self.chaincode, fn, args, transient, timestamp=timestamp
        )
        request = gateway_pb2.EndorseRequest(
            transaction_id=proposal.tx_id,
            channel_id=self.channel,
            proposed_transaction=proposal.signed,
            endorsing_organizations=list(endorsing_orgs or ()),
        )
        gateway = self._gateway(as_org)
        try:
            response = self._poll(lambda: gateway.Endorse(request, timeout=self.timeouts.endorse), "endorse")
        except grpc.RpcError as err:
            raise endorse_error(gateway_error(err)) from None
        return response.prepared_transaction, proposal.tx_id

    def submit_prepared(self, envelope: common_pb2.Envelope, tx_id: str, *, as_org: str) -> Commit:
        """Sign and submit a prepared transaction, then wait for its commit status."""
        identity = self.identity(as_org)
        signed = sign_envelope(identity, envelope)
        gateway = self._gateway(as_org)
        request = gateway_pb2.SubmitRequest(
            transaction_id=tx_id, channel_id=self.channel, prepared_transaction=signed
        )
        self._submit(gateway, request, tx_id)
        block, status = self.commit_status(
            tx_id, as_org=as_org, resubmit=lambda: self._submit(gateway, request, tx_id)
        )
        self._heights.committed(as_org, block)
        if status != "VALID":
            raise TransactionInvalid(tx_id, status, block)
        return Commit(tx_id, block, status, transaction_result(envelope))

    def _submit(
        self, gateway: gateway_pb2_grpc.GatewayStub, request: gateway_pb2.SubmitRequest, tx_id: str
    ) -> None:
        """Hand the signed transaction to the orderer through the gateway (ADR 0012, ADR 0038)."""
        try:
            self._rpc(lambda: gateway.Submit(request, timeout=self.timeouts.submit))
        except grpc.RpcError as err:
            ge = gateway_error(err)
            if orderer_refused(ge):  # no orderer took it: nothing can commit, a retry is safe
                raise OrdererUnavailable(f"submit {tx_id}: {ge}") from None
            if ge.code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ):
                raise CommitStatusUnknown(tx_id, f"submit: {ge}") from None
            # the orderer refused it outright (bad request, forbidden): it will never commit
            raise TransactionInvalid(tx_id, f"REJECTED_BY_ORDERER ({ge})") from None

    def commit_status(
        self,
        tx_id: str,
        *,
        as_org: str,
        timeout: float | None = None,
        resubmit: Callable[[], None] | None = None,
    ) -> tuple[int, str]:
        """(block, validation code name); waits for the commit. Raises CommitStatusUnknown on timeout.

        With `resubmit` (the same signed transaction, submitted again), a wait longer than
        `Timeouts.commit_probe` submits it again every probe interval: an orderer that is gone shows at
        once (CommitStatusUnknown, not a wait for the whole commit timeout: the transaction may still be in
        a block the orderer wrote before it died), and one that lost the transaction in a crash orders it
        again (the peers commit the first copy of a tx id only)."""
        identity = self.identity(as_org)
        request = commit_status_request(identity, self.channel, tx_id)
        gateway = self._gateway(as_org)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeouts.commit)
        probe = self.timeouts.commit_probe if resubmit is not None else None
        next_probe = time.monotonic() + probe if probe else deadline
        delay = 0.05
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise CommitStatusUnknown(tx_id, "no commit status before the deadline")
            if resubmit is not None and probe and now >= next_probe:
                try:
                    resubmit()
                except OrdererUnavailable as exc:
                    raise CommitStatusUnknown(tx_id, f"orderer unavailable while committing: {exc}") from None
                except LedgerError as exc:
                    log.info("re-submit of %s while waiting for its commit: %s", tx_id, exc)
                next_probe = time.monotonic() + probe
                continue
            wait = min(remaining, max(0.05, next_probe - now))
            try:
                response = self._rpc(lambda t=wait: gateway.CommitStatus(request, timeout=t))
                return response.block_number, transaction_pb2.TxValidationCode.Name(response.result)
            except grpc.RpcError as err:
                ge = gateway_error(err)
                waited = time.monotonic() >= now + wait
                if ge.code == grpc.StatusCode.DEADLINE_EXCEEDED and waited and time.monotonic() < deadline:
                    continue  # a probe interval passed without the commit: probe, then wait again
                if ge.code != grpc.StatusCode.UNAVAILABLE:
                    raise CommitStatusUnknown(tx_id, str(ge)) from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)

    # --- events -----------------------------------------------------------------------------------
    def events(
        self,
        since_block: int = 0,
        *,
        timeout: float | None = None,
        as_org: str | None = None,
        after_tx_id: str = "",
    ) -> Iterator[ChaincodeEvent]:
        """With a `timeout`, a poll that ends once no event came for `timeout` seconds. Fabric's gateway
        keeps a cancelled ChaincodeEvents stream open until the next block with a chaincode event, so a
        stream per poll on an idle chain (or with the orderer down) piles up until the peer refuses every
        call ("exceeding concurrency limit") and no block can come any more. So a poll from the chain's last
        block that got that block's events is remembered with the height; the same poll at the same height
        answers from that memory (blocks never change) and opens no stream (ADR 0038)."""
        org = as_org or self._default_org
        key = (org, since_block, after_tx_id)
        height = self._quiet_height(org) if timeout is not None else None
        cached = self._drained.get(key)
        if height is not None and cached is not None and cached[0] == height:
            yield from cached[1]
            time.sleep(timeout or 0.0)  # the wait for a new event an open stream would have made
            return
        seen: list[ChaincodeEvent] = []
        request = chaincode_events_request(
            self.identity(org), self.channel, self.chaincode, since_block, after_tx_id
        )
        call = self._gateway(org).ChaincodeEvents(request)
        inbox: queue.Queue[object] = queue.Queue()

        def pump() -> None:
            try:
                for response in call:
                    inbox.put(response)
            except grpc.RpcError as err:
                inbox.put(err)
            finally:
                inbox.put(_END)

        threading.Thread(target=pump, daemon=True, name="fabric-events").start()
        try:
            while True:
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = _END  # read to the end of the chain as it was when the poll began
                if item is _END:
                    # remembered only with proof the stream read the whole chain: the last block's events
                    if height == since_block + 1 and seen and all(e.block == since_block for e in seen):
                        with self._lock:
                            if len(self._drained) > 64:
                                self._drained.clear()
                            self._drained[key] = (height, tuple(seen))
                    return
                if isinstance(item, grpc.RpcError):
                    ge = gateway_error(item)
                    if ge.code == grpc.StatusCode.CANCELLED:
                        return
                    raise LedgerUnavailable(f"event stream broke: {ge}")
                assert isinstance(item, gateway_pb2.ChaincodeEventsResponse)
                for ev in item.events:
                    seen.append(ChaincodeEvent(item.block_number, ev.tx_id, ev.event_name, ev.payload))
                    yield seen[-1]
        finally:
            call.cancel()

    # --- blocks and transactions through QSCC -------------------------------------------------------
    def _qscc(self, fn: str, *args: str, as_org: str | None = None) -> bytes:
        return self._evaluate("qscc", fn, [self.channel, *args], as_org or self._default_org)

    def _quiet_height(self, org: str) -> int | None:
        try:
            return self.height(as_org=org)
        except LedgerError:
            return None

    def height(self, *, as_org: str | None = None) -> int:
        """Block height of the channel on the peer behind `as_org`'s gateway (default org's otherwise)."""
        return ledger_pb2.BlockchainInfo.FromString(self._qscc("GetChainInfo", as_org=as_org)).height

    def block(self, number: int) -> BlockRecord:
        try:
            return records.block_record(self._qscc("GetBlockByNumber", str(number)))
        except EndorsementFailed as err:
            text = str(err).lower()
            if any(m in text for m in ("not found", "out of range", "could not find", "no such block")):
                raise KeyError(number) from None
            raise

    def tx(self, tx_id: str) -> TransactionRecord:
        try:
            processed = transaction_pb2.ProcessedTransaction.FromString(
                self._qscc("GetTransactionByID", tx_id)
            )
            block = common_pb2.Block.FromString(self._qscc("GetBlockByTxID", tx_id))
        except EndorsementFailed as err:
            if "no such transaction" in str(err).lower() or "not found" in str(err).lower():
                raise KeyError(tx_id) from None
            raise
        envelope_bytes = processed.transactionEnvelope.SerializeToString()
        index = next(
            (i for i, data in enumerate(block.data.data) if data == envelope_bytes),
            _index_by_tx_id(block, tx_id),
        )
        status = transaction_pb2.TxValidationCode.Name(processed.validationCode)
        return records.transaction_record(
            envelope_bytes, block=block.header.number, index=index, status=status
        )


def _index_by_tx_id(block: common_pb2.Block, tx_id: str) -> int:
    for i, data in enumerate(block.data.data):
        payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(data).payload)
        if common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id == tx_id:
            return i
    return -1


def _open_channel(endpoint: GatewayEndpoint) -> grpc.Channel:
    options = list(CHANNEL_OPTIONS)
    if endpoint.tls_root_pem is None:
        assert endpoint.insecure  # GatewayEndpoint refuses anything else
        return grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.server_name:
        options.append(("grpc.ssl_target_name_override", endpoint.server_name))  # type: ignore[arg-type]
    creds = grpc.ssl_channel_credentials(
        root_certificates=endpoint.tls_root_pem,
        private_key=endpoint.client_key_pem,
        certificate_chain=endpoint.client_cert_pem,
    )
    return grpc.secure_channel(endpoint.address, creds, options=options)


def endorse_error(ge: GatewayError) -> LedgerError:
    """Map a failed Evaluate/Endorse (nothing was submitted) to the ledger error classes."""
    refusal = ge.chaincode_error()
    if refusal is not None:
        return ChaincodeRejected(refusal)
    if ge.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return LedgerUnavailable(str(ge))
    return EndorsementFailed(str(ge))


def transaction_result(envelope: common_pb2.Envelope) -> bytes:
    """The chaincode's answer inside a prepared transaction (what every endorser agreed on)."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    prp = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    return proposal_pb2.ChaincodeAction.FromString(prp.extension).response.payload
