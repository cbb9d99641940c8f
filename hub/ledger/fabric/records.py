"""Fabric blocks and transactions as the hub's `BlockRecord` / `TransactionRecord`.

`raw` keeps the protobuf bytes (block, envelope) so audit code can verify signatures itself; the parsed
fields are conveniences. The block hash is Fabric's: SHA-256 of the ASN.1 DER SEQUENCE
{INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash}; each header's previous_hash is the
hash of the block before, which is what lets an auditor chain blocks.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)

from hub.ledger.base import BlockRecord, ChaincodeEvent, Endorsement, TransactionRecord


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def block_header_hash(header: common_pb2.BlockHeader) -> bytes:
    number = header.number
    int_body = number.to_bytes(max(1, (number.bit_length() + 8) // 8), "big")  # room for the sign bit
    encoded = _der(
        0x30,
        _der(0x02, int_body) + _der(0x04, header.previous_hash) + _der(0x04, header.data_hash),
    )
    return hashlib.sha256(encoded).digest()


def _channel_header(envelope: common_pb2.Envelope) -> tuple[common_pb2.Payload, common_pb2.ChannelHeader]:
    payload = common_pb2.Payload.FromString(envelope.payload)
    return payload, common_pb2.ChannelHeader.FromString(payload.header.channel_header)


def block_record(block_bytes: bytes) -> BlockRecord:
    block = common_pb2.Block.FromString(block_bytes)
    tx_ids = []
    for data in block.data.data:
        _, channel_header = _channel_header(common_pb2.Envelope.FromString(data))
        tx_ids.append(channel_header.tx_id)
    return BlockRecord(
        number=block.header.number,
        previous_hash=block.header.previous_hash,
        data_hash=block.header.data_hash,
        hash=block_header_hash(block.header),
        tx_ids=tx_ids,
        # the block protobuf (header, data, metadata with signatures) and each transaction's commit code
        raw={"block": block_bytes, "validation": validation_codes(block)},
    )


def validation_codes(block: common_pb2.Block) -> list[str]:
    """Per-transaction validation code names from the block's TRANSACTIONS_FILTER metadata."""
    entries = block.metadata.metadata
    flags = entries[common_pb2.TRANSACTIONS_FILTER] if len(entries) > common_pb2.TRANSACTIONS_FILTER else b""
    return [transaction_pb2.TxValidationCode.Name(f) for f in flags]


def transaction_record(envelope_bytes: bytes, *, block: int, index: int, status: str) -> TransactionRecord:
    envelope = common_pb2.Envelope.FromString(envelope_bytes)
    payload, channel_header = _channel_header(envelope)
    signature_header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    creator = identities_pb2.SerializedIdentity.FromString(signature_header.creator)
    ts = channel_header.timestamp
    timestamp = dt.datetime.fromtimestamp(ts.seconds, dt.UTC) + dt.timedelta(microseconds=ts.nanos // 1000)
    fn, args, response, event, endorsements = "", [], b"", None, []
    if channel_header.type == common_pb2.ENDORSER_TRANSACTION:
        tx = transaction_pb2.Transaction.FromString(payload.data)
        action_payload = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
        proposal_payload = proposal_pb2.ChaincodeProposalPayload.FromString(
            action_payload.chaincode_proposal_payload
        )
        spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(proposal_payload.input)
        all_args = list(spec.chaincode_spec.input.args)
        fn = all_args[0].decode("utf-8", "replace") if all_args else ""
        args = all_args[1:]
        prp = proposal_response_pb2.ProposalResponsePayload.FromString(
            action_payload.action.proposal_response_payload
        )
        action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
        response = action.response.payload
        if action.events:
            cc_event = chaincode_event_pb2.ChaincodeEvent.FromString(action.events)
            if cc_event.event_name:
                event = ChaincodeEvent(block, channel_header.tx_id, cc_event.event_name, cc_event.payload)
        for endorsement in action_payload.action.endorsements:
            endorser = identities_pb2.SerializedIdentity.FromString(endorsement.endorser)
            endorsements.append(Endorsement(endorser.mspid, endorser.id_bytes, endorsement.signature))
    return TransactionRecord(
        tx_id=channel_header.tx_id,
        block=block,
        index=index,
        status=status,
        timestamp=timestamp,
        creator_msp_id=creator.mspid,
        creator_cert=creator.id_bytes,
        function=fn,
        args=args,
        response=response,
        event=event,
        endorsements=endorsements,
        raw={"envelope": envelope_bytes},
    )


def transaction_result(envelope: common_pb2.Envelope) -> bytes:
    """The chaincode's answer inside a prepared transaction (what every endorser agreed on)."""
    return _endorsed_action(envelope)[1].response.payload


def endorser_msp_ids(envelope: common_pb2.Envelope) -> tuple[str, ...]:
    """The MSP ids of a prepared transaction's endorsers, in order, each once."""
    endorsements = _endorsed_action(envelope)[0].action.endorsements
    msp_ids = (identities_pb2.SerializedIdentity.FromString(e.endorser).mspid for e in endorsements)
    return tuple(dict.fromkeys(msp_ids))


def _endorsed_action(
    envelope: common_pb2.Envelope,
) -> tuple[transaction_pb2.ChaincodeActionPayload, proposal_pb2.ChaincodeAction]:
    payload = common_pb2.Payload.FromString(envelope.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    prp = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    return action_payload, proposal_pb2.ChaincodeAction.FromString(prp.extension)
