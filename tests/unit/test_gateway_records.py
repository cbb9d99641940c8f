"""Blocks and transactions parsed into the hub's records; Fabric's block header hash."""

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

from hub.ledger.fabric.client import transaction_result
from hub.ledger.fabric.records import block_header_hash, block_record, transaction_record, validation_codes


def test_block_header_hash_is_sha256_of_the_der_sequence() -> None:
    header = common_pb2.BlockHeader(number=1, previous_hash=b"\x01" * 32, data_hash=b"\x02" * 32)
    der = (
        bytes([0x30, 0x47, 0x02, 0x01, 0x01, 0x04, 0x20]) + b"\x01" * 32 + bytes([0x04, 0x20]) + b"\x02" * 32
    )
    assert len(der) - 2 == 0x47
    assert block_header_hash(header) == hashlib.sha256(der).digest()
    # 128 needs a leading zero byte (the INTEGER is signed); block 0 has an empty previous hash
    header = common_pb2.BlockHeader(number=128, previous_hash=b"", data_hash=b"\x03" * 32)
    der = bytes([0x30, 0x28, 0x02, 0x02, 0x00, 0x80, 0x04, 0x00, 0x04, 0x20]) + b"\x03" * 32
    assert block_header_hash(header) == hashlib.sha256(der).digest()


def _envelope(tx_id: str, fn: bytes, args: list[bytes], event: str = "") -> bytes:
    creator = identities_pb2.SerializedIdentity(mspid="ProviderMSP", id_bytes=b"PEM").SerializeToString()
    ch = common_pb2.ChannelHeader(type=common_pb2.ENDORSER_TRANSACTION, channel_id="billing", tx_id=tx_id)
    ch.timestamp.FromDatetime(dt.datetime(2026, 1, 1, 12, 0, 0))
    header = common_pb2.Header(
        channel_header=ch.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=creator, nonce=b"n").SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(input=chaincode_pb2.ChaincodeInput(args=[fn, *args]))
    )
    cpp = proposal_pb2.ChaincodeProposalPayload(input=spec.SerializeToString())
    action = proposal_pb2.ChaincodeAction(
        response=proposal_response_pb2.Response(status=200, payload=b"answer"),
        events=chaincode_event_pb2.ChaincodeEvent(
            tx_id=tx_id, event_name=event, payload=b"ev"
        ).SerializeToString()
        if event
        else b"",
    )
    prp = proposal_response_pb2.ProposalResponsePayload(extension=action.SerializeToString())
    endorser = identities_pb2.SerializedIdentity(mspid="CustomerMSP", id_bytes=b"PEER").SerializeToString()
    cap = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=cpp.SerializeToString(),
        action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=prp.SerializeToString(),
            endorsements=[proposal_response_pb2.Endorsement(endorser=endorser, signature=b"sig")],
        ),
    )
    tx = transaction_pb2.Transaction(
        actions=[transaction_pb2.TransactionAction(payload=cap.SerializeToString())]
    )
    payload = common_pb2.Payload(header=header, data=tx.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString(), signature=b"s").SerializeToString()


def test_transaction_record_fields() -> None:
    raw = _envelope("tx1", b"RecordUsage", [b"{}"], event="UsageRecorded")
    rec = transaction_record(raw, block=4, index=2, status="VALID")
    assert (rec.tx_id, rec.block, rec.index, rec.status) == ("tx1", 4, 2, "VALID")
    assert rec.timestamp == dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert (rec.creator_msp_id, rec.creator_cert, rec.function, rec.args) == (
        "ProviderMSP",
        b"PEM",
        "RecordUsage",
        [b"{}"],
    )
    assert rec.response == b"answer"
    assert rec.event is not None and (rec.event.name, rec.event.payload, rec.event.block) == (
        "UsageRecorded",
        b"ev",
        4,
    )
    assert [(e.msp_id, e.certificate, e.signature) for e in rec.endorsements] == [
        ("CustomerMSP", b"PEER", b"sig")
    ]
    assert rec.raw["envelope"] == raw
    assert transaction_record(_envelope("tx2", b"F", []), block=1, index=0, status="VALID").event is None


def test_block_record_and_validation_flags() -> None:
    envs = [_envelope("a", b"F", []), _envelope("b", b"G", [])]
    block = common_pb2.Block(
        header=common_pb2.BlockHeader(number=9, previous_hash=b"p", data_hash=b"d"),
        data=common_pb2.BlockData(data=envs),
        metadata=common_pb2.BlockMetadata(
            metadata=[b"", b"", bytes([transaction_pb2.VALID, transaction_pb2.MVCC_READ_CONFLICT]), b"", b""]
        ),
    )
    rec = block_record(block.SerializeToString())
    assert (rec.number, rec.previous_hash, rec.data_hash, rec.tx_ids) == (9, b"p", b"d", ["a", "b"])
    assert rec.hash == block_header_hash(block.header)
    assert validation_codes(block) == ["VALID", "MVCC_READ_CONFLICT"]
    assert rec.raw["validation"] == ["VALID", "MVCC_READ_CONFLICT"]
    assert common_pb2.Block.FromString(rec.raw["block"]) == block


def test_transaction_result_reads_the_agreed_response() -> None:
    assert transaction_result(common_pb2.Envelope.FromString(_envelope("t", b"F", []))) == b"answer"
