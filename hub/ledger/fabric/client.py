"""`FabricLedger`: the hub's `Ledger` over the Fabric Gateway gRPC service.

Flow of a submit (as fabric-gateway's own client): build and sign a proposal → Endorse (the gateway runs
it on enough peers to satisfy the chaincode and key-level policies) → `Endorsed` → sign the prepared
transaction → Submit (the gateway hands it to the orderer) → signed CommitStatus (blocks until the
transaction is in a block) → `Commit`. Errors become `hub.ledger.base` errors so callers know what is safe
to retry (`hub.ledger.fabric.errors`).

This module is the façade; each role has its module: endpoints and channels (`endpoints`), proposals and
signatures (`txbuild`), gateway error reading (`rpcstatus`) and mapping (`errors`), ordering and commit
status (`commits`), events (`events`), QSCC look-ups (`lookups`), read-your-writes across orgs
(`heights`), protobuf to records (`records`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc

from chaincode.errors import ChaincodeError
from hub.ledger.base import (
    Args,
    BlockHeader,
    BlockRecord,
    ChaincodeEvent,
    ChaincodeRejected,
    Commit,
    Endorsed,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnsupported,
    TransactionInvalid,
    TransactionRecord,
    VerifyReport,
)
from hub.ledger.fabric import commits
from hub.ledger.fabric.endpoints import (
    CHANNEL_OPTIONS,
    GatewayEndpoint,
    InsecureGateway,
    Timeouts,
    open_channel,
)
from hub.ledger.fabric.errors import (
    PAYLOADS_DIFFER,
    STALE_READ_CODES,
    WARMUP_MARKERS,
    endorse_error,
    qscc_not_found,
    warming_up,
)
from hub.ledger.fabric.events import EventPolls
from hub.ledger.fabric.heights import PeerHeights
from hub.ledger.fabric.identity import FabricIdentity
from hub.ledger.fabric.lookups import ChainLookups
from hub.ledger.fabric.records import endorser_msp_ids, transaction_result
from hub.ledger.fabric.rpcstatus import gateway_error
from hub.ledger.fabric.txbuild import build_proposal, chaincode_events_request, sign_envelope

__all__ = [
    "CHANNEL_OPTIONS",
    "PAYLOADS_DIFFER",
    "STALE_READ_ATTEMPTS",
    "STALE_READ_CODES",
    "WARMUP_MARKERS",
    "FabricLedger",
    "GatewayEndpoint",
    "InsecureGateway",
    "Timeouts",
    "endorse_error",
    "transaction_result",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

STALE_READ_ATTEMPTS = 5


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
        self._lookups = ChainLookups(self._qscc)
        self._events = EventPolls(self._open_events, self._quiet_height)

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
                channel = open_channel(endpoint)
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
                if warming_up(ge):
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

    def _evaluate(
        self, chaincode: str, fn: str, args: Args, org: str, lookup: tuple[str, object] | None = None
    ) -> bytes:
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
            raise endorse_error(gateway_error(err), lookup=lookup) from None
        result = response.result
        if result.status >= 400:
            if lookup is not None and qscc_not_found(None, [result.message]):
                raise LedgerNotFound(*lookup)
            # a gateway that passes the chaincode's error response through (instead of an RPC error) still
            # carries the contract's refusal: it is the same ChaincodeRejected as on the RPC-error path
            refusal = ChaincodeError.from_json(result.message)
            if refusal is not None:
                raise ChaincodeRejected(refusal)
            raise EndorsementFailed(f"evaluate returned status {result.status}: {result.message}")
        return result.payload

    # --- endorse and submit -----------------------------------------------------------------------
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

        def endorse() -> Endorsed:
            return self.endorse(
                fn,
                args,
                as_org=as_org,
                transient=transient,
                endorsing_orgs=endorsing_orgs,
                timestamp=timestamp,
            )

        while True:
            self._heights.catch_up(as_org, self.timeouts.commit)
            try:
                endorsed = endorse()
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
                endorsed = endorse()
            try:
                return self.submit_endorsed(endorsed)
            except TransactionInvalid as err:
                if err.status not in STALE_READ_CODES or attempt >= STALE_READ_ATTEMPTS:
                    raise
                log.info("%s %s invalidated (%s), endorsing again", fn, endorsed.tx_id, err.status)
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
    ) -> Endorsed:
        """Endorse only: the prepared (not yet signed) transaction. `timestamp` is the proposal timestamp
        this client chooses (default: now), as any Fabric client may."""
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
        envelope = response.prepared_transaction
        return Endorsed(
            proposal.tx_id, as_org, transaction_result(envelope), envelope, endorser_msp_ids(envelope)
        )

    def submit_endorsed(self, endorsed: Endorsed) -> Commit:
        return self.submit_prepared(endorsed.envelope, endorsed.tx_id, as_org=endorsed.as_org)

    def submit_prepared(self, envelope: common_pb2.Envelope, tx_id: str, *, as_org: str) -> Commit:
        """Sign and submit a prepared transaction (as endorsed, or altered by a test), then wait for its
        commit status."""
        signed = sign_envelope(self.identity(as_org), envelope)
        gateway = self._gateway(as_org)
        request = gateway_pb2.SubmitRequest(
            transaction_id=tx_id, channel_id=self.channel, prepared_transaction=signed
        )

        def send() -> None:
            commits.submit(self._rpc, gateway, request, tx_id, self.timeouts.submit)

        send()
        block, status = self.commit_status(tx_id, as_org=as_org, resubmit=send)
        self._heights.committed(as_org, block)
        if status != "VALID":
            raise TransactionInvalid(tx_id, status, block)
        return Commit(tx_id, block, status, transaction_result(envelope))

    def commit_status(
        self,
        tx_id: str,
        *,
        as_org: str,
        timeout: float | None = None,
        resubmit: Callable[[], None] | None = None,
    ) -> tuple[int, str]:
        """(block, validation code name) of a submitted transaction; waits for the commit
        (`hub.ledger.fabric.commits.commit_status`)."""
        return commits.commit_status(
            self._rpc,
            self._gateway(as_org),
            self.identity(as_org),
            self.channel,
            tx_id,
            self.timeouts,
            timeout=timeout,
            resubmit=resubmit,
        )

    # --- events -----------------------------------------------------------------------------------
    def events(
        self,
        since_block: int = 0,
        *,
        timeout: float | None = None,
        after_tx_id: str = "",
        as_org: str | None = None,
    ) -> Iterator[ChaincodeEvent]:
        """`hub.ledger.fabric.events` (ADR 0038). An `after_tx_id` the channel does not hold raises
        LedgerNotFound, as on the embedded ledger (the gateway itself would deliver nothing at all)."""
        org = as_org or self._default_org
        if after_tx_id:
            self._lookups.block_of_tx(after_tx_id)  # LedgerNotFound before any stream is opened
        return self._events.events(org, since_block, timeout=timeout, after_tx_id=after_tx_id)

    def _open_events(self, org: str, since_block: int, after_tx_id: str) -> grpc.Call:
        request = chaincode_events_request(
            self.identity(org), self.channel, self.chaincode, since_block, after_tx_id
        )
        return self._gateway(org).ChaincodeEvents(request)

    # --- blocks and transactions through QSCC -------------------------------------------------------
    def _qscc(self, fn: str, args: list[str], as_org: str | None, lookup: tuple[str, object] | None) -> bytes:
        return self._evaluate("qscc", fn, [self.channel, *args], as_org or self._default_org, lookup)

    def _quiet_height(self, org: str) -> int | None:
        try:
            return self.height(as_org=org)
        except LedgerError:
            return None

    def height(self, *, as_org: str | None = None) -> int:
        """Block height of the channel on the peer behind `as_org`'s gateway (default org's otherwise)."""
        return self._lookups.height(as_org)

    def block(self, number: int) -> BlockRecord:
        return self._lookups.block(number)

    def block_header(self, number: int) -> BlockHeader:
        return self._lookups.block_header(number)

    def tx(self, tx_id: str) -> TransactionRecord:
        return self._lookups.tx(tx_id)

    def verify(self) -> VerifyReport:
        raise LedgerUnsupported(f"{type(self).__name__} is verified by its own network, not by the hub")
