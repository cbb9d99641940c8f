"""Building and signing what the gateway accepts, exactly as fabric-gateway's client does.

proposal: nonce = 24 random bytes; creator = SerializedIdentity; tx_id = hex(SHA-256(nonce ‖ creator));
ChannelHeader{ENDORSER_TRANSACTION, timestamp, channel, tx_id, extension = ChaincodeHeaderExtension{name}};
SignatureHeader{creator, nonce}; ChaincodeProposalPayload{ChaincodeInvocationSpec{args = [fn, *args]},
transient map}. The signature is over the serialized proposal; the prepared transaction returned by Endorse
is signed over its envelope payload; commit-status and event requests are signed over their bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2

from hub.ledger.fabric.identity import FabricIdentity


def as_bytes(arg: str | bytes) -> bytes:
    return arg.encode() if isinstance(arg, str) else bytes(arg)


@dataclass(frozen=True)
class SignedProposal:
    tx_id: str
    channel: str
    signed: proposal_pb2.SignedProposal


def new_tx_id(nonce: bytes, creator: bytes) -> str:
    return hashlib.sha256(nonce + creator).hexdigest()


def build_proposal(
    identity: FabricIdentity,
    channel: str,
    chaincode: str,
    fn: str,
    args: Sequence[str | bytes] = (),
    transient: Mapping[str, bytes] | None = None,
    *,
    nonce: bytes | None = None,
    timestamp: dt.datetime | None = None,
) -> SignedProposal:
    nonce = nonce if nonce is not None else os.urandom(24)
    creator = identity.serialized()
    tx_id = new_tx_id(nonce, creator)
    extension = proposal_pb2.ChaincodeHeaderExtension(chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode))
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION,
        channel_id=channel,
        tx_id=tx_id,
        extension=extension.SerializeToString(),
    )
    when = (timestamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    channel_header.timestamp.FromDatetime(when)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=creator, nonce=nonce).SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
            input=chaincode_pb2.ChaincodeInput(args=[fn.encode(), *(as_bytes(a) for a in args)]),
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=spec.SerializeToString(), TransientMap=dict(transient or {})
    )
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    proposal_bytes = proposal.SerializeToString()
    signed = proposal_pb2.SignedProposal(
        proposal_bytes=proposal_bytes, signature=identity.sign(proposal_bytes)
    )
    return SignedProposal(tx_id, channel, signed)


def sign_envelope(identity: FabricIdentity, envelope: common_pb2.Envelope) -> common_pb2.Envelope:
    """Sign the prepared transaction returned by Endorse (over its payload bytes)."""
    signed = common_pb2.Envelope()
    signed.CopyFrom(envelope)
    signed.signature = identity.sign(envelope.payload)
    return signed


def commit_status_request(
    identity: FabricIdentity, channel: str, tx_id: str
) -> gateway_pb2.SignedCommitStatusRequest:
    request = gateway_pb2.CommitStatusRequest(
        transaction_id=tx_id, channel_id=channel, identity=identity.serialized()
    ).SerializeToString()
    return gateway_pb2.SignedCommitStatusRequest(request=request, signature=identity.sign(request))


def chaincode_events_request(
    identity: FabricIdentity, channel: str, chaincode: str, start_block: int | None, after_tx_id: str = ""
) -> gateway_pb2.SignedChaincodeEventsRequest:
    """Events from `start_block` on (None: from the next commit). `after_tx_id` skips events up to and
    including that transaction, for resuming inside a block."""
    if start_block is None:
        position = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
    else:
        position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
    request = gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel,
        chaincode_id=chaincode,
        identity=identity.serialized(),
        start_position=position,
        after_transaction_id=after_tx_id,
    ).SerializeToString()
    return gateway_pb2.SignedChaincodeEventsRequest(request=request, signature=identity.sign(request))
