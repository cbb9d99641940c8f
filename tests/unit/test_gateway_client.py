"""The Fabric gateway client against an in-process fake Gateway service (real gRPC, loopback).

The fake checks what a real gateway checks about the client's messages (signatures over the right bytes,
tx id derivation) and answers with the gateway's real error shapes (google.rpc.Status + ErrorDetail), so
these tests pin the client's protocol handling; the real network tests are tests/fabric/test_gateway_*.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)

from chaincode.errors import ChaincodeError
from hub.keys.signer import SoftwareSigner, is_low_s, verify_bytes
from hub.ledger.base import (
    ChaincodeRejected,
    CommitStatusUnknown,
    EndorsementFailed,
    Ledger,
    LedgerNotFound,
    LedgerUnavailable,
    TransactionInvalid,
    TransactionTooLarge,
)
from hub.ledger.fabric.client import FabricLedger, GatewayEndpoint, Timeouts
from hub.ledger.fabric.identity import FabricIdentity, identity_from_signer
from hub.ledger.fabric.rpcstatus import STATUS_TRAILER, OrdererUnavailable, status_trailer
from hub.ledger.fabric.txbuild import build_proposal


def make_identity(msp_id: str) -> FabricIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"user@{msp_id}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return identity_from_signer(msp_id, SoftwareSigner(key, cert))


def _public_key(identity_bytes: bytes) -> ec.EllipticCurvePublicKey:
    sid = identities_pb2.SerializedIdentity.FromString(identity_bytes)
    key = x509.load_pem_x509_certificate(sid.id_bytes).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, details: list[str]) -> None:
    errs = [gateway_pb2.ErrorDetail(address="peer0:7051", msp_id="ProviderMSP", message=m) for m in details]
    context.set_trailing_metadata([(STATUS_TRAILER, status_trailer(code.value[0], message, errs))])
    context.abort(code, message)


@dataclass
class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Scripted answers; records what it received."""

    result: bytes = b'{"ok":true}'
    result_status: int = 200  # the status of the chaincode response inside a successful Evaluate
    result_message: str = ""
    evaluate_errors: list[tuple[grpc.StatusCode, str, list[str]]] = field(default_factory=list)
    endorse_errors: list[tuple[grpc.StatusCode, str, list[str]]] = field(default_factory=list)
    submit_error: tuple[grpc.StatusCode, str] | None = None
    # per Submit call, used first: None = accepted, else (code, message, ErrorDetail messages)
    submit_script: list[tuple[grpc.StatusCode, str, list[str]] | None] = field(default_factory=list)
    commit_hold: int = 0  # CommitStatus calls that wait out the caller's deadline (a commit that never comes)
    commit_code: int = transaction_pb2.VALID
    commit_codes: list[int] = field(default_factory=list)  # scripted codes, used first, then commit_code
    commit_unavailable: int = 0
    commit_hang: bool = False
    events: list[gateway_pb2.ChaincodeEventsResponse] = field(default_factory=list)
    # function -> answer (bytes, or a callable giving them per call); missing = "not found"
    qscc: dict[str, Any] = field(default_factory=dict)
    events_break: bool = False  # end the event stream with UNAVAILABLE after the scripted events
    seen: dict[str, list[object]] = field(default_factory=dict)

    def _record(self, name: str, item: object) -> None:
        self.seen.setdefault(name, []).append(item)

    def _check_proposal(self, signed: proposal_pb2.SignedProposal, tx_id: str) -> None:
        proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        sig_header = common_pb2.SignatureHeader.FromString(header.signature_header)
        assert hashlib.sha256(sig_header.nonce + sig_header.creator).hexdigest() == tx_id
        assert verify_bytes(_public_key(sig_header.creator), signed.signature, signed.proposal_bytes)

    def Evaluate(self, request, context):
        self._record("evaluate", request)
        self._check_proposal(request.proposed_transaction, request.transaction_id)
        if self.evaluate_errors:
            _abort(context, *self.evaluate_errors.pop(0))
        proposal = proposal_pb2.Proposal.FromString(request.proposed_transaction.proposal_bytes)
        cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
        spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input).chaincode_spec
        if spec.chaincode_id.name == "qscc":
            fn, channel, *rest = (a.decode() for a in spec.input.args)
            self._record("qscc", (fn, channel, rest))
            if fn not in self.qscc:
                text = f"Failed to get transaction with id {rest}, error no such transaction ID [{rest}]"
                _abort(context, grpc.StatusCode.ABORTED, "failed to evaluate transaction", [text])
            answer = self.qscc[fn]
            payload = answer() if callable(answer) else answer
            return gateway_pb2.EvaluateResponse(
                result=proposal_response_pb2.Response(status=200, payload=payload)
            )
        return gateway_pb2.EvaluateResponse(
            result=proposal_response_pb2.Response(
                status=self.result_status, payload=self.result, message=self.result_message
            )
        )

    def Endorse(self, request, context):
        self._record("endorse", request)
        self._check_proposal(request.proposed_transaction, request.transaction_id)
        if self.endorse_errors:
            _abort(context, *self.endorse_errors.pop(0))
        proposal = proposal_pb2.Proposal.FromString(request.proposed_transaction.proposal_bytes)
        action = proposal_pb2.ChaincodeAction(
            response=proposal_response_pb2.Response(status=200, payload=self.result)
        )
        prp = proposal_response_pb2.ProposalResponsePayload(extension=action.SerializeToString())
        cap = transaction_pb2.ChaincodeActionPayload(
            action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=prp.SerializeToString())
        )
        tx = transaction_pb2.Transaction(
            actions=[transaction_pb2.TransactionAction(payload=cap.SerializeToString())]
        )
        payload = common_pb2.Payload(
            header=common_pb2.Header.FromString(proposal.header), data=tx.SerializeToString()
        )
        envelope = common_pb2.Envelope(payload=payload.SerializeToString())
        return gateway_pb2.EndorseResponse(prepared_transaction=envelope)

    def Submit(self, request, context):
        self._record("submit", request)
        envelope = request.prepared_transaction
        header = common_pb2.Payload.FromString(envelope.payload).header
        creator = common_pb2.SignatureHeader.FromString(header.signature_header).creator
        assert verify_bytes(_public_key(creator), envelope.signature, envelope.payload)
        assert is_low_s(envelope.signature)
        if self.submit_script:
            scripted = self.submit_script.pop(0)
            if scripted is not None:
                _abort(context, *scripted)
            return gateway_pb2.SubmitResponse()
        if self.submit_error:
            context.abort(*self.submit_error)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):
        self._record("commit", request)
        inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        assert verify_bytes(_public_key(inner.identity), request.signature, request.request)
        if self.commit_unavailable:
            self.commit_unavailable -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "peer restarting")
        if self.commit_hang:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "waited")
        if self.commit_hold:
            self.commit_hold -= 1
            time.sleep((context.time_remaining() or 0) + 0.2)
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "waited")
        code = self.commit_codes.pop(0) if self.commit_codes else self.commit_code
        return gateway_pb2.CommitStatusResponse(result=code, block_number=7)

    def ChaincodeEvents(self, request, context):
        inner = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        assert verify_bytes(_public_key(inner.identity), request.signature, request.request)
        self._record("events", inner)
        start = inner.start_position.specified.number
        for response in self.events:
            if response.block_number >= start:
                yield response
        if self.events_break:
            context.abort(grpc.StatusCode.UNAVAILABLE, "peer went away")


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, FabricLedger]]:
    fake = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ledger = FabricLedger(
        channel="billing",
        chaincode="billing",
        identities={"ProviderMSP": make_identity("ProviderMSP"), "CustomerMSP": make_identity("CustomerMSP")},
        gateways={"*": GatewayEndpoint(f"127.0.0.1:{port}", insecure=True)},
        timeouts=Timeouts(evaluate=5, endorse=5, submit=5, commit=2, warmup=3, unavailable=1),
    )
    yield fake, ledger
    ledger.close()
    server.stop(None)


def test_is_a_ledger(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    assert isinstance(gateway[1], Ledger)
    assert gateway[1].network_id == "billing"


def test_proposal_is_built_like_fabric_gateway() -> None:
    identity = make_identity("ProviderMSP")
    ts = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    p = build_proposal(
        identity,
        "billing",
        "billing",
        "RecordUsage",
        ["{}", b"\x00"],
        {"k": b"v"},
        nonce=b"n" * 24,
        timestamp=ts,
    )
    creator = identity.serialized()
    assert p.tx_id == hashlib.sha256(b"n" * 24 + creator).hexdigest()
    proposal = proposal_pb2.Proposal.FromString(p.signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    ch = common_pb2.ChannelHeader.FromString(header.channel_header)
    assert (ch.type, ch.channel_id, ch.tx_id) == (common_pb2.ENDORSER_TRANSACTION, "billing", p.tx_id)
    assert ch.timestamp.ToDatetime(dt.UTC) == ts
    assert proposal_pb2.ChaincodeHeaderExtension.FromString(ch.extension).chaincode_id.name == "billing"
    sh = common_pb2.SignatureHeader.FromString(header.signature_header)
    assert (sh.creator, sh.nonce) == (creator, b"n" * 24)
    sid = identities_pb2.SerializedIdentity.FromString(creator)
    assert sid.mspid == "ProviderMSP" and sid.id_bytes.startswith(b"-----BEGIN CERTIFICATE-----")
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    assert dict(payload.TransientMap) == {"k": b"v"}
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input)
    assert spec.chaincode_spec.chaincode_id.name == "billing"
    assert list(spec.chaincode_spec.input.args) == [b"RecordUsage", b"{}", b"\x00"]
    pub = identity.signer.public_key()
    assert verify_bytes(pub, p.signed.signature, p.signed.proposal_bytes) and is_low_s(p.signed.signature)


def test_evaluate_returns_the_payload(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    assert ledger.evaluate("GetAsset", ['{"id":"a"}'], as_org="CustomerMSP") == b'{"ok":true}'
    assert fake.seen["evaluate"][0].channel_id == "billing"  # type: ignore[attr-defined]


def test_submit_endorses_signs_submits_and_waits(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    commit = ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP", endorsing_orgs=["ProviderMSP"])
    assert commit.valid and commit.block == 7 and commit.payload == b'{"ok":true}'
    endorse = fake.seen["endorse"][0]
    assert commit.tx_id == endorse.transaction_id  # type: ignore[attr-defined]
    assert list(endorse.endorsing_organizations) == ["ProviderMSP"]  # type: ignore[attr-defined]
    assert fake.seen["submit"][0].transaction_id == commit.tx_id  # type: ignore[attr-defined]


def _refusal_text(status: int = 409, code: str = "period_closed") -> str:
    err = ChaincodeError(code, "period 2026-01 is closed", period="2026-01")
    return f"chaincode response {status}, {err.to_json()}"


def test_evaluate_refusal_becomes_chaincode_rejected(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    text = _refusal_text()
    fake.evaluate_errors.append(
        (grpc.StatusCode.UNKNOWN, "evaluate call to endorser returned error: " + text, [text])
    )
    with pytest.raises(ChaincodeRejected) as info:
        ledger.evaluate("GetPeriod", ["{}"], as_org="ProviderMSP")
    assert info.value.code == "period_closed" and info.value.error.details == {"period": "2026-01"}


def test_evaluate_error_status_in_the_result_is_mapped(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    err = ChaincodeError("unknown_invoice", "no invoice inv-9", id="inv-9")
    fake.result_status, fake.result_message = err.status, err.to_json()
    with pytest.raises(ChaincodeRejected) as info:
        ledger.evaluate("GetInvoice", ["{}"], as_org="ProviderMSP")
    assert info.value.code == "unknown_invoice" and info.value.error.details == {"id": "inv-9"}
    fake.result_status, fake.result_message = 500, "internal error: boom"  # not the contract's refusal
    with pytest.raises(EndorsementFailed, match="status 500"):
        ledger.evaluate("GetInvoice", ["{}"], as_org="ProviderMSP")


def test_endorse_refusal_in_details_becomes_chaincode_rejected(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    fake, ledger = gateway
    fake.endorse_errors.append(
        (
            grpc.StatusCode.ABORTED,
            "failed to endorse transaction, see attached details for more info",
            [_refusal_text()],
        )
    )
    with pytest.raises(ChaincodeRejected) as info:
        ledger.submit("CloseBillingPeriod", ["{}"], as_org="ProviderMSP")
    assert info.value.code == "period_closed"
    assert "submit" not in fake.seen  # nothing was submitted


def test_warmup_no_peer_combination_is_polled_until_ready(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    warm = (grpc.StatusCode.FAILED_PRECONDITION, "no peer combination can satisfy the endorsement policy", [])
    fake.endorse_errors.extend([warm, warm])
    assert ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP").valid
    assert len(fake.seen["endorse"]) == 3


def test_unavailable_before_submit_is_ledger_unavailable(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.evaluate_errors.extend([(grpc.StatusCode.UNAVAILABLE, "down", [])] * 100)
    with pytest.raises(LedgerUnavailable) as info:
        ledger.evaluate("GetAsset", ["{}"], as_org="ProviderMSP")
    assert info.value.retryable
    assert len(fake.seen["evaluate"]) > 1  # it was retried within the warm-up budget


def test_other_endorsement_problem_is_endorsement_failed(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.endorse_errors.append(
        (grpc.StatusCode.ABORTED, "failed to collect enough transaction endorsements", ["access denied"])
    )
    with pytest.raises(EndorsementFailed, match="access denied"):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")


def test_invalid_at_commit_is_transaction_invalid(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.commit_code = transaction_pb2.MVCC_READ_CONFLICT
    with pytest.raises(TransactionInvalid) as info:
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    assert info.value.status == "MVCC_READ_CONFLICT" and info.value.block == 7 and info.value.retryable


def test_submit_unavailable_is_commit_status_unknown(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.submit_error = (grpc.StatusCode.UNAVAILABLE, "no orderers could successfully process transaction")
    with pytest.raises(CommitStatusUnknown) as info:
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    assert info.value.tx_id == fake.seen["endorse"][0].transaction_id  # type: ignore[attr-defined]


ORDERER_GONE = (
    grpc.StatusCode.UNAVAILABLE,
    "no orderers could successfully process transaction",
    [
        'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
        'dial tcp 127.0.0.1:7050: connect: connection refused"'
    ],
)
NO_LEADER = (
    grpc.StatusCode.UNAVAILABLE,
    "no orderers could successfully process transaction",
    ["received unsuccessful response from orderer: status=SERVICE_UNAVAILABLE, info=no Raft leader"],
)


@pytest.mark.parametrize("refusal", [ORDERER_GONE, NO_LEADER], ids=["connection-refused", "no-raft-leader"])
def test_submit_no_orderer_took_it_is_ledger_unavailable(
    gateway: tuple[FakeGateway, FabricLedger], refusal: tuple[grpc.StatusCode, str, list[str]]
) -> None:
    """ADR 0038: the gateway says no orderer took the transaction, so nothing can commit: a retryable
    LedgerUnavailable at once, and no wait for a commit status."""
    fake, ledger = gateway
    fake.submit_script.append(refusal)
    with pytest.raises(OrdererUnavailable) as info:
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    assert isinstance(info.value, LedgerUnavailable) and info.value.retryable
    assert "commit" not in fake.seen


def test_submit_orderer_lost_mid_broadcast_is_commit_status_unknown(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    """An orderer that went away after the transaction was sent may have ordered it: unknown, not
    unavailable."""
    fake, ledger = gateway
    lost = ["rpc error: code = Unavailable desc = error reading from server: EOF"]
    fake.submit_script.append((grpc.StatusCode.UNAVAILABLE, "no orderers could process transaction", lost))
    with pytest.raises(CommitStatusUnknown):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")


def test_a_long_commit_wait_finds_the_orderer_gone(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    """Submitted, then the orderer dies before the block: the commit wait re-submits the same signed
    transaction after `commit_probe`, learns the orderer is gone and gives up long before the commit
    timeout."""
    fake, ledger = gateway
    ledger.timeouts = Timeouts(evaluate=5, endorse=5, submit=5, commit=60, warmup=3, unavailable=1,
                               commit_probe=0.3)
    fake.submit_script.extend([None, ORDERER_GONE])
    fake.commit_hold = 100
    with pytest.raises(CommitStatusUnknown, match="orderer unavailable"):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    first, again = fake.seen["submit"]
    assert first.prepared_transaction == again.prepared_transaction  # type: ignore[attr-defined]
    assert len(fake.seen["commit"]) == 1


def test_a_lost_transaction_is_ordered_again_by_the_probe(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    """The orderer took it and lost it (a crash before the block): the re-submitted copy commits."""
    fake, ledger = gateway
    ledger.timeouts = Timeouts(evaluate=5, endorse=5, submit=5, commit=60, warmup=3, unavailable=1,
                               commit_probe=0.3)
    fake.commit_hold = 1
    assert ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP").valid
    assert len(fake.seen["submit"]) == 2 and len(fake.seen["commit"]) == 2


def test_orderer_rejection_is_transaction_invalid(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.submit_error = (grpc.StatusCode.ABORTED, "received unsuccessful response from orderer: BAD_REQUEST")
    with pytest.raises(TransactionInvalid, match="REJECTED_BY_ORDERER"):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")


def test_an_orderer_size_refusal_is_transaction_too_large(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    """The orderer's broadcast size filter (BAD_REQUEST "... exceeds maximum allowed ... bytes") is told apart
    from its other refusals: the ingestor splits a batch on it (ADR 0069) and on nothing else."""
    fake, ledger = gateway
    fake.submit_error = (
        grpc.StatusCode.ABORTED,
        "received unsuccessful response from orderer: status=BAD_REQUEST, "
        "info=message payload is 11922949 bytes and exceeds maximum allowed 10485760 bytes",
    )
    with pytest.raises(TransactionTooLarge, match="REJECTED_BY_ORDERER"):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    fake.submit_error = (grpc.StatusCode.ABORTED, "received unsuccessful response from orderer: BAD_REQUEST")
    with pytest.raises(TransactionInvalid) as other:
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")
    assert not isinstance(other.value, TransactionTooLarge)


def test_commit_status_retries_unavailable_then_answers(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.commit_unavailable = 2
    assert ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP").valid
    assert len(fake.seen["commit"]) == 3


def test_lost_commit_status_is_commit_status_unknown(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    fake.commit_hang = True
    with pytest.raises(CommitStatusUnknown):
        ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP")


def test_unknown_org_is_refused(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    with pytest.raises(Exception, match="no identity for org"):
        gateway[1].evaluate("GetAsset", ["{}"], as_org="AuditorMSP")


def test_events_from_a_block_in_order_and_timeout_ends_the_iterator(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    fake, ledger = gateway

    def ev(tx: str, name: str) -> chaincode_event_pb2.ChaincodeEvent:
        return chaincode_event_pb2.ChaincodeEvent(
            chaincode_id="billing", tx_id=tx, event_name=name, payload=b"{}"
        )

    fake.events = [
        gateway_pb2.ChaincodeEventsResponse(block_number=3, events=[ev("t1", "A"), ev("t2", "B")]),
        gateway_pb2.ChaincodeEventsResponse(block_number=5, events=[ev("t3", "C")]),
    ]
    got = list(ledger.events(4, timeout=0.5))
    assert [(e.block, e.tx_id, e.name) for e in got] == [(5, "t3", "C")]
    got = list(ledger.events(0, timeout=0.5))
    assert [(e.block, e.tx_id) for e in got] == [(3, "t1"), (3, "t2"), (5, "t3")]
    inner = fake.seen["events"][0]
    assert inner.chaincode_id == "billing" and inner.start_position.specified.number == 4  # type: ignore[attr-defined]


def test_identity_serialization_round_trip() -> None:
    identity = make_identity("AuditorMSP")
    sid = identities_pb2.SerializedIdentity.FromString(identity.serialized())
    assert sid.mspid == "AuditorMSP"
    cert = x509.load_pem_x509_certificate(sid.id_bytes)
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == identity.signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_height_block_and_tx_through_qscc(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    from tests.unit.test_gateway_records import _envelope

    fake, ledger = gateway
    envs = [_envelope("first", b"RegisterAsset", [b"{}"]), _envelope("wanted", b"RecordUsage", [b"{}"])]
    block = common_pb2.Block(
        header=common_pb2.BlockHeader(number=5, previous_hash=b"p", data_hash=b"d"),
        data=common_pb2.BlockData(data=envs),
    )
    processed = transaction_pb2.ProcessedTransaction(
        transactionEnvelope=common_pb2.Envelope.FromString(envs[1]), validationCode=transaction_pb2.VALID
    )
    fake.qscc = {
        "GetChainInfo": ledger_pb2.BlockchainInfo(height=6).SerializeToString(),
        "GetBlockByNumber": block.SerializeToString(),
        "GetBlockByTxID": block.SerializeToString(),
        "GetTransactionByID": processed.SerializeToString(),
    }
    assert ledger.height() == 6
    record = ledger.block(5)
    assert (record.number, record.tx_ids) == (5, ["first", "wanted"])
    tx = ledger.tx("wanted")
    assert (tx.tx_id, tx.block, tx.index, tx.status, tx.function) == ("wanted", 5, 1, "VALID", "RecordUsage")
    calls = fake.seen["qscc"]
    assert ("GetBlockByNumber", "billing", ["5"]) in calls and (
        "GetTransactionByID",
        "billing",
        ["wanted"],
    ) in calls
    del fake.qscc["GetTransactionByID"]
    with pytest.raises(LedgerNotFound):
        ledger.tx("unknown")


def test_broken_event_stream_raises_after_delivering_what_arrived(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    fake, ledger = gateway
    event = chaincode_event_pb2.ChaincodeEvent(
        chaincode_id="billing", tx_id="t1", event_name="A", payload=b""
    )
    fake.events = [gateway_pb2.ChaincodeEventsResponse(block_number=2, events=[event])]
    fake.events_break = True
    got = []
    with pytest.raises(LedgerUnavailable):
        for e in ledger.events(0, timeout=30):
            got.append(e.tx_id)
    assert got == ["t1"]  # the caller checkpoints block 2 and resumes from there


def test_each_org_uses_its_own_gateway(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    fake, ledger = gateway
    other = FakeGateway(result=b"from the customer gateway")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gateway_pb2_grpc.add_GatewayServicer_to_server(other, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        ledger._endpoints["CustomerMSP"] = GatewayEndpoint(f"127.0.0.1:{port}", insecure=True)
        assert ledger.evaluate("GetAsset", ["{}"], as_org="CustomerMSP") == b"from the customer gateway"
        assert ledger.evaluate("GetAsset", ["{}"], as_org="ProviderMSP") == b'{"ok":true}'
        assert len(other.seen["evaluate"]) == 1 and len(fake.seen["evaluate"]) == 1
    finally:
        server.stop(None)


def test_in_flight_gateway_calls_are_capped() -> None:
    release = threading.Event()
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    class SlowGateway(FakeGateway):
        def Evaluate(self, request, context):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            release.wait(30)
            with lock:
                state["now"] -= 1
            return super().Evaluate(request, context)

    fake = SlowGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ledger = FabricLedger(
        channel="billing",
        chaincode="billing",
        identities={"ProviderMSP": make_identity("ProviderMSP")},
        gateways={"*": GatewayEndpoint(f"127.0.0.1:{port}", insecure=True)},
        max_in_flight=3,
    )
    try:
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            calls = [pool.submit(ledger.evaluate, "GetAsset", ["{}"], as_org="ProviderMSP") for _ in range(8)]
            for _ in range(600):  # wait until the cap is reached (bounded poll)
                if state["now"] == 3:
                    break
                time.sleep(0.01)
            time.sleep(0.2)  # give any excess call the chance to (wrongly) arrive
            assert state["now"] == 3
            release.set()
            assert all(c.result(timeout=30) == b'{"ok":true}' for c in calls)
        assert state["max"] == 3
    finally:
        release.set()
        ledger.close()
        server.stop(None)


def test_a_stale_read_invalidation_is_endorsed_again_as_a_new_proposal(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    """MVCC_READ_CONFLICT wrote nothing: the client endorses again (new tx id) instead of failing the caller;
    on the real network this happened whenever one org submitted right after another."""
    fake, ledger = gateway
    fake.commit_codes = [transaction_pb2.MVCC_READ_CONFLICT, transaction_pb2.PHANTOM_READ_CONFLICT]
    commit = ledger.submit("RecordUsage", ['{"n":1}'], as_org="ProviderMSP")
    assert commit.valid
    endorsed = [r.transaction_id for r in fake.seen["endorse"]]
    assert len(endorsed) == 3 and len(set(endorsed)) == 3 and endorsed[-1] == commit.tx_id


def test_stale_reads_are_retried_a_bounded_number_of_times_and_other_codes_never(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    from hub.ledger.fabric.client import STALE_READ_ATTEMPTS

    fake, ledger = gateway
    fake.commit_code = transaction_pb2.MVCC_READ_CONFLICT
    with pytest.raises(TransactionInvalid, match="MVCC_READ_CONFLICT"):
        ledger.submit("RecordUsage", ['{"n":1}'], as_org="ProviderMSP")
    assert len(fake.seen["endorse"]) == STALE_READ_ATTEMPTS
    fake.commit_code = transaction_pb2.ENDORSEMENT_POLICY_FAILURE
    with pytest.raises(TransactionInvalid, match="ENDORSEMENT_POLICY_FAILURE"):
        ledger.submit("RecordUsage", ['{"n":2}'], as_org="ProviderMSP")
    assert len(fake.seen["endorse"]) == STALE_READ_ATTEMPTS + 1


def test_an_org_that_acts_after_another_waits_for_its_peer_to_hold_that_commit(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    """Read-your-writes across orgs: after a commit in block 7 through the provider's gateway, the customer's
    next endorsement waits until its peer reports a height above 7 (QSCC GetChainInfo), polling."""
    fake, ledger = gateway
    ledger.submit("RecordUsage", ['{"n":1}'], as_org="ProviderMSP")
    heights = iter([7, 7, 8])  # the customer's peer catches up after two polls
    fake.qscc["GetChainInfo"] = lambda: ledger_pb2.BlockchainInfo(height=next(heights, 8)).SerializeToString()
    ledger.submit("AcceptContract", ['{"contract_id":"c"}'], as_org="CustomerMSP")
    polls = [c for c in fake.seen["qscc"] if c[0] == "GetChainInfo"]
    assert len(polls) == 3
    ledger.submit("RecordUsage", ['{"n":2}'], as_org="CustomerMSP")  # known to be caught up: no poll
    assert len([c for c in fake.seen["qscc"] if c[0] == "GetChainInfo"]) == 3


def test_a_query_by_another_org_waits_for_its_peer_to_hold_the_last_commit(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    """The customer reads the contract the provider just proposed: on the real network its peer could still be
    a block behind and answered `unknown_contract` (seen as a 404 on accept under load). The query waits for
    the customer's peer to report the commit's height first, as endorsements do."""
    fake, ledger = gateway
    ledger.submit("ProposeContract", ['{"id":"c"}'], as_org="ProviderMSP")
    heights = iter([7, 8])  # the customer's peer catches up after one poll
    fake.qscc["GetChainInfo"] = lambda: ledger_pb2.BlockchainInfo(height=next(heights, 8)).SerializeToString()
    assert ledger.evaluate("GetContract", ['{"id":"c"}'], as_org="CustomerMSP") == b'{"ok":true}'
    assert len([c for c in fake.seen["qscc"] if c[0] == "GetChainInfo"]) == 2
    ledger.evaluate("GetContract", ['{"id":"c"}'], as_org="CustomerMSP")  # known to be caught up: no poll
    assert len([c for c in fake.seen["qscc"] if c[0] == "GetChainInfo"]) == 2


def test_an_idle_event_poll_opens_no_new_stream_until_the_chain_grows(
    gateway: tuple[FakeGateway, FabricLedger],
) -> None:
    """ADR 0038: Fabric's gateway keeps a cancelled ChaincodeEvents stream until the next block with an
    event, so polls on an idle chain must not open one each. The same poll at the same height answers what
    the stream gave (the checkpoint block's events again) without a stream; a higher chain opens one."""
    fake, ledger = gateway
    height = [6]
    fake.qscc["GetChainInfo"] = lambda: ledger_pb2.BlockchainInfo(height=height[0]).SerializeToString()

    def response(block: int, tx: str) -> gateway_pb2.ChaincodeEventsResponse:
        event = chaincode_event_pb2.ChaincodeEvent(
            chaincode_id="billing", tx_id=tx, event_name="A", payload=b"{}"
        )
        return gateway_pb2.ChaincodeEventsResponse(block_number=block, events=[event])

    fake.events = [response(5, "t1")]
    first = [(e.block, e.tx_id) for e in ledger.events(5, timeout=0.2)]
    again = [(e.block, e.tx_id) for e in ledger.events(5, timeout=0.2)]
    assert first == again == [(5, "t1")]
    assert len(fake.seen["events"]) == 1  # the second poll opened no stream
    fake.events.append(response(6, "t2"))
    height[0] = 7
    grown = [(e.block, e.tx_id) for e in ledger.events(5, timeout=0.2)]
    assert grown == [(5, "t1"), (6, "t2")] and len(fake.seen["events"]) == 2
    # a poll that got something past its start block is not remembered: the next one streams again
    assert [e.tx_id for e in ledger.events(5, timeout=0.2)] == ["t1", "t2"]
    assert len(fake.seen["events"]) == 3


@pytest.mark.parametrize(
    "behind",
    [
        pytest.param(("failed to endorse transaction", _refusal_text(404, "unknown_invoice")), id="refusal"),
        pytest.param(
            (
                "failed to collect enough transaction endorsements, see attached details for more info",
                "ProposalResponsePayloads do not match",
            ),
            id="payloads-differ",
        ),
    ],
)
def test_a_refusal_from_a_peer_behind_the_last_commit_is_endorsed_again_once_it_caught_up(
    gateway: tuple[FakeGateway, FabricLedger], behind: tuple[str, str]
) -> None:
    """A both-party function (an ERP posting right after the close, a close right after usage) is endorsed
    by the other org's peer too; one block behind, its chaincode answers `unknown_invoice` (seen once on
    the HSM network) or an answer from older state, which the gateway reports as payloads that do not
    match (seen once in make test). The client brings that peer up to its last commit and endorses once
    more; with every peer caught up, the contract's refusal stands and is not asked again."""
    fake, ledger = gateway
    ledger.submit("CloseBillingPeriod", ['{"id":"c"}'], as_org="ProviderMSP")  # commits block 7: need 8
    heights = iter([7, 7, 8])  # the customer's peer: behind, still behind at the first poll, caught up
    fake.qscc["GetChainInfo"] = lambda: ledger_pb2.BlockchainInfo(height=next(heights, 8)).SerializeToString()
    message, detail = behind
    fake.endorse_errors.append((grpc.StatusCode.ABORTED, message, [detail]))
    ledger.submit("RecordErpPosting", ['{"id":"inv-c"}'], as_org="ProviderMSP")
    assert len(fake.seen["endorse"]) == 3  # the close, the refused posting, the posting again
    assert len([c for c in fake.seen["qscc"] if c[0] == "GetChainInfo"]) == 3

    fake.endorse_errors.append((grpc.StatusCode.ABORTED, "failed to endorse transaction", [_refusal_text()]))
    with pytest.raises(ChaincodeRejected) as info:
        ledger.submit("CloseBillingPeriod", ['{"id":"c"}'], as_org="ProviderMSP")
    assert info.value.code == "period_closed"
    assert len(fake.seen["endorse"]) == 4  # every peer known to be caught up: not asked again


def test_other_endorsement_failures_are_not_endorsed_again(gateway: tuple[FakeGateway, FabricLedger]) -> None:
    """Only a stale peer's symptoms are retried: any other endorsement failure is the caller's at once."""
    fake, ledger = gateway
    ledger.submit("CloseBillingPeriod", ['{"id":"c"}'], as_org="ProviderMSP")
    fake.qscc["GetChainInfo"] = lambda: ledger_pb2.BlockchainInfo(height=7).SerializeToString()
    fake.endorse_errors.append((grpc.StatusCode.ABORTED, "failed to endorse transaction", ["access denied"]))
    with pytest.raises(EndorsementFailed):
        ledger.submit("RecordErpPosting", ['{"id":"inv-c"}'], as_org="ProviderMSP")
    assert len(fake.seen["endorse"]) == 2 and "GetChainInfo" not in {c[0] for c in fake.seen.get("qscc", [])}
