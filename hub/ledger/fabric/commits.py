"""After endorsement: hand the signed transaction to the orderer and wait for its commit status.

Nothing is retried automatically after Submit was attempted, because only the commit status can tell
whether it landed (`CommitStatusUnknown`); re-submitting the *same* signed transaction is safe (the peers
commit the first copy of a tx id only, a later one is DUPLICATE_TXID) and is how a lost orderer shows
(ADR 0012, ADR 0038).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import transaction_pb2

from hub.ledger.base import CommitStatusUnknown, LedgerError, TransactionInvalid, TransactionTooLarge
from hub.ledger.fabric.endpoints import Timeouts
from hub.ledger.fabric.identity import FabricIdentity
from hub.ledger.fabric.rpcstatus import OrdererUnavailable, gateway_error, orderer_refused
from hub.ledger.fabric.txbuild import commit_status_request

log = logging.getLogger(__name__)
T = TypeVar("T")
Rpc = Callable[[Callable[[], T]], T]
# the orderer's broadcast size filter (orderer/common/msgprocessor/sizefilter.go): "message payload is %d
# bytes and exceeds maximum allowed %d bytes", answered BAD_REQUEST and passed on by the gateway
SIZE_REFUSAL = "exceeds maximum allowed"


def submit(rpc: Rpc, gateway: gateway_pb2_grpc.GatewayStub, request: gateway_pb2.SubmitRequest,
           tx_id: str, timeout: float) -> None:
    """Hand the signed transaction to the orderer through the gateway."""
    try:
        rpc(lambda: gateway.Submit(request, timeout=timeout))
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
        if any(SIZE_REFUSAL in text for text in ge.texts()):
            raise TransactionTooLarge(tx_id, f"REJECTED_BY_ORDERER ({ge})") from None
        raise TransactionInvalid(tx_id, f"REJECTED_BY_ORDERER ({ge})") from None


def commit_status(
    rpc: Rpc,
    gateway: gateway_pb2_grpc.GatewayStub,
    identity: FabricIdentity,
    channel: str,
    tx_id: str,
    timeouts: Timeouts,
    *,
    timeout: float | None = None,
    resubmit: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """(block, validation code name); waits for the commit. Raises CommitStatusUnknown on timeout.

    With `resubmit` (the same signed transaction, submitted again), a wait longer than
    `Timeouts.commit_probe` submits it again every probe interval: an orderer that is gone shows at
    once (CommitStatusUnknown, not a wait for the whole commit timeout: the transaction may still be in
    a block the orderer wrote before it died), and one that lost the transaction in a crash orders it
    again (the peers commit the first copy of a tx id only)."""
    request = commit_status_request(identity, channel, tx_id)
    deadline = time.monotonic() + (timeout if timeout is not None else timeouts.commit)
    probe = timeouts.commit_probe if resubmit is not None else None
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
            response = rpc(lambda t=wait: gateway.CommitStatus(request, timeout=t))
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
