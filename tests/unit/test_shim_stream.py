"""The chaincode shim against a fake peer over a real gRPC Connect stream (loopback, OS-chosen port)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from fabric_protos.peer import chaincode_pb2
from fabric_protos.peer import chaincode_shim_pb2 as pb

from chaincode.errors import ChaincodeError
from chaincode.shim import ChaincodeServer, PeerError, ServerConfig, key_policy_bytes, orgs_from_policy
from chaincode.stub import Stub, create_composite_key
from tests.helpers.fake_peer import CCM, FakePeer

CHAINCODE_ID = "billing_1:abc123"


def toy_invoke(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
    """A small contract exercising every Stub call the shim implements."""
    if fn == "put":
        stub.put_state(args[0].decode(), args[1])
        stub.set_event("Put", args[0])
        return b"ok"
    if fn == "get":
        return stub.get_state(args[0].decode()) or b"<none>"
    if fn == "getmany":
        values = stub.get_multiple_states([a.decode() for a in args])
        return json.dumps([v.decode() if v else None for v in values]).encode()
    if fn == "del":
        stub.del_state(args[0].decode())
        return b"deleted"
    if fn == "range":
        return json.dumps(
            [[k, v.decode()] for k, v in stub.get_state_by_range(*(a.decode() for a in args))]
        ).encode()
    if fn == "first_of_range":
        iterator = stub.get_state_by_range("", "")
        key, _ = next(iter(iterator))
        if isinstance(iterator, Iterator):
            iterator.close()  # type: ignore[attr-defined]
        return key.encode()
    if fn == "partial":
        pairs = stub.get_state_by_partial_composite_key("reading", [args[0].decode()])
        return json.dumps([v.decode() for _, v in pairs]).encode()
    if fn == "history":
        return json.dumps(
            [[m.tx_id, m.value.decode(), m.is_delete] for m in stub.get_history_for_key("k")]
        ).encode()
    if fn == "endorse":
        stub.set_key_endorsement(args[0].decode(), [a.decode() for a in args[1:]])
        return b"ok"
    if fn == "who_endorses":
        return json.dumps(stub.get_key_endorsement(args[0].decode())).encode()
    if fn == "context":
        return json.dumps(
            {
                "tx_id": stub.tx_id,
                "channel": stub.channel_id,
                "ts": stub.tx_timestamp().isoformat(),
                "msp": stub.creator_msp_id(),
                "cert": stub.creator_cert().decode(),
                "transient": {k: v.decode() for k, v in stub.transient().items()},
            }
        ).encode()
    if fn == "refuse":
        stub.put_state("never", b"written")
        raise ChaincodeError("period_closed", "period 2026-01 is closed", period="2026-01")
    if fn == "crash":
        raise RuntimeError("boom")
    raise ChaincodeError("unknown_function", f"no function {fn}")


@pytest.fixture
def server() -> Iterator[ChaincodeServer]:
    srv = ChaincodeServer(
        toy_invoke, ServerConfig(chaincode_id=CHAINCODE_ID, address="127.0.0.1:0", workers=32)
    )
    srv.start()
    yield srv
    srv.stop(grace=None)


def _peer(server: ChaincodeServer, **kw: object) -> FakePeer:
    return FakePeer(f"127.0.0.1:{server.port}", **kw)  # type: ignore[arg-type]


def test_registers_with_the_package_id_then_serves_a_transaction(server: ChaincodeServer) -> None:
    with _peer(server, state={"a": b"1"}) as peer:
        assert peer.chaincode_name == CHAINCODE_ID
        result = peer.invoke("get", [b"a"])
    assert result.message.type == CCM.COMPLETED
    assert result.response.status == 200
    assert result.response.payload == b"1"


def test_missing_key_reads_as_none(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        assert peer.invoke("get", [b"nope"]).response.payload == b"<none>"


def test_put_reaches_the_peer_and_event_travels_in_completed(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        result = peer.invoke("put", [b"k", b"v"])
        assert result.writes == {"k": b"v"}
        assert result.requests == [CCM.PUT_STATE]
        assert result.message.chaincode_event.event_name == "Put"
        assert result.message.chaincode_event.payload == b"k"
        peer.commit(result)
        assert peer.invoke("get", [b"k"]).response.payload == b"v"


def test_delete(server: ChaincodeServer) -> None:
    with _peer(server, state={"k": b"v"}) as peer:
        assert peer.invoke("del", [b"k"]).writes == {"k": None}


def test_refusal_is_a_completed_error_response_with_the_error_json(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        result = peer.invoke("refuse")
    assert result.message.type == CCM.COMPLETED
    assert result.response.status == 409
    assert not result.message.HasField("chaincode_event")
    err = ChaincodeError.from_json(result.response.message)
    assert err is not None and err.code == "period_closed" and err.details == {"period": "2026-01"}


def test_contract_crash_is_status_500_not_a_hang(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        result = peer.invoke("crash")
    assert result.response.status == 500
    assert "boom" in result.response.message


def test_peer_error_answer_fails_the_transaction(server: ChaincodeServer) -> None:
    with _peer(server, fail_keys=["bad"]) as peer:
        result = peer.invoke("get", [b"bad"])
    assert result.response.status == 500
    assert "peer refuses key bad" in result.response.message


def test_no_function_name_is_unknown_function(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        tx = peer.start("", [])
        # an empty function name still travels as args[0]; the toy contract refuses it
        assert tx.result(timeout=30).response.status == 400


def test_proposal_context_creator_timestamp_transient(server: ChaincodeServer) -> None:
    ts = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC)
    with _peer(server) as peer:
        result = peer.invoke(
            "context",
            tx_id="tx-ctx",
            channel="ch2",
            msp_id="CustomerMSP",
            cert=b"PEM",
            timestamp=ts,
            transient={"secret": b"s3"},
        )
    ctx = json.loads(result.response.payload)
    assert ctx == {
        "tx_id": "tx-ctx",
        "channel": "ch2",
        "ts": ts.isoformat(),
        "msp": "CustomerMSP",
        "cert": "PEM",
        "transient": {"secret": "s3"},
    }


def test_range_query_pages_through_query_state_next(server: ChaincodeServer) -> None:
    state = {f"k{i}": str(i).encode() for i in range(7)}
    with _peer(server, state=state, page_size=2) as peer:
        result = peer.invoke("range", [b"k1", b"k6"])
    assert json.loads(result.response.payload) == [[f"k{i}", str(i)] for i in range(1, 6)]
    # pages of 2: [1,2] [3,4] [5], then the iterator is closed as fabric-chaincode-go does
    assert result.requests == [
        CCM.GET_STATE_BY_RANGE,
        CCM.QUERY_STATE_NEXT,
        CCM.QUERY_STATE_NEXT,
        CCM.QUERY_STATE_CLOSE,
    ]


def test_abandoned_range_iterator_is_closed_on_the_peer(server: ChaincodeServer) -> None:
    state = {f"k{i}": b"x" for i in range(5)}
    with _peer(server, state=state, page_size=2) as peer:
        result = peer.invoke("first_of_range")
        assert result.response.payload == b"k0"
        assert result.requests[-1] == CCM.QUERY_STATE_CLOSE
        assert len(peer.closed_iterators) == 1


def test_partial_composite_key(server: ChaincodeServer) -> None:
    state = {
        create_composite_key("reading", ["c1", "r1"]): b"a",
        create_composite_key("reading", ["c1", "r2"]): b"b",
        create_composite_key("reading", ["c2", "r1"]): b"c",
        "plain": b"d",
    }
    with _peer(server, state=state) as peer:
        assert json.loads(peer.invoke("partial", [b"c1"]).response.payload) == ["a", "b"]


def test_history_for_key(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        for i, value in enumerate([b"v1", b"v2"]):
            peer.commit(peer.invoke("put", [b"k", value]), tx_id=f"t{i}")
        peer.commit(peer.invoke("del", [b"k"]), tx_id="t2")
        history = json.loads(peer.invoke("history").response.payload)
    assert history == [["t2", "", True], ["t1", "v2", False], ["t0", "v1", False]]


def test_key_endorsement_written_as_signature_policy_and_read_back(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        result = peer.invoke("endorse", [b"inv", b"ProviderMSP", b"CustomerMSP"])
        policy = result.metadata["inv"]["VALIDATION_PARAMETER"]
        assert policy == key_policy_bytes(["CustomerMSP", "ProviderMSP"])
        assert orgs_from_policy(policy) == ["CustomerMSP", "ProviderMSP"]
        peer.commit(result)
        assert json.loads(peer.invoke("who_endorses", [b"inv"]).response.payload) == [
            "CustomerMSP",
            "ProviderMSP",
        ]
        assert json.loads(peer.invoke("who_endorses", [b"other"]).response.payload) is None


def test_write_batching_when_the_peer_offers_it(server: ChaincodeServer) -> None:
    params = chaincode_pb2.ChaincodeAdditionalParams(
        use_write_batch=True,
        max_size_write_batch=100,
        use_get_multiple_keys=True,
        max_size_get_multiple_keys=100,
    )
    with _peer(server, params=params) as peer:
        result = peer.invoke("put", [b"k", b"v"])
        assert result.requests == [CCM.WRITE_BATCH_STATE]
        assert result.writes == {"k": b"v"}
        result = peer.invoke("endorse", [b"inv", b"ProviderMSP"])
        assert result.requests == [CCM.WRITE_BATCH_STATE]
        assert orgs_from_policy(result.metadata["inv"]["VALIDATION_PARAMETER"]) == ["ProviderMSP"]
        # a refusal sends no batch at all
        assert peer.invoke("refuse").requests == []


def test_write_batch_is_chunked_at_the_announced_size() -> None:
    def many(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        for i in range(250):
            stub.put_state(f"k{i:03}", b"v")
        stub.put_state("k000", b"last")  # a rewrite replaces the earlier write
        return b""

    srv = ChaincodeServer(many, ServerConfig(chaincode_id=CHAINCODE_ID, address="127.0.0.1:0"))
    srv.start()
    try:
        params = chaincode_pb2.ChaincodeAdditionalParams(use_write_batch=True, max_size_write_batch=100)
        with FakePeer(f"127.0.0.1:{srv.port}", params=params) as peer:
            result = peer.invoke("many")
        assert result.requests == [CCM.WRITE_BATCH_STATE] * 3
        assert len(result.writes) == 250 and result.writes["k000"] == b"last"
    finally:
        srv.stop(grace=None)


def test_get_multiple_uses_get_state_multiple_when_offered(server: ChaincodeServer) -> None:
    params = chaincode_pb2.ChaincodeAdditionalParams(
        use_get_multiple_keys=True, max_size_get_multiple_keys=100
    )
    with _peer(server, state={"a": b"1", "c": b"3"}, params=params) as peer:
        result = peer.invoke("getmany", [b"a", b"b", b"c"])
    assert json.loads(result.response.payload) == ["1", None, "3"]
    assert result.requests == [CCM.GET_STATE_MULTIPLE]


def test_get_multiple_falls_back_to_get_state(server: ChaincodeServer) -> None:
    with _peer(server, state={"a": b"1"}) as peer:
        result = peer.invoke("getmany", [b"a", b"b"])
    assert json.loads(result.response.payload) == ["1", None]
    assert result.requests == [CCM.GET_STATE, CCM.GET_STATE]


def test_keepalive_is_echoed(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        peer.send(CCM(type=CCM.KEEPALIVE, txid="ka-1"))
        echo = peer.keepalive_echoes.get(timeout=30)
    assert echo.type == CCM.KEEPALIVE and echo.txid == "ka-1"


def test_transaction_before_ready_is_refused(server: ChaincodeServer) -> None:
    with _peer(server, send_ready=False) as peer:
        result = peer.invoke("get", [b"a"])
        assert result.message.type == CCM.ERROR
        assert b"before READY" in result.message.payload
        peer.send_ready()
        assert peer.invoke("get", [b"a"]).message.type == CCM.COMPLETED


def test_failed_init_answers_error(server: ChaincodeServer) -> None:
    with _peer(server) as peer:
        result = peer.invoke("refuse", kind=CCM.INIT)
        assert result.message.type == CCM.ERROR
        assert ChaincodeError.from_json(result.message.payload.decode()) is not None
        assert peer.invoke("get", [b"x"], kind=CCM.INIT).message.type == CCM.COMPLETED


def test_duplicate_txid_in_flight_is_refused_and_the_original_completes() -> None:
    release = threading.Event()

    def slow(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        stub.get_state("a")
        release.wait(30)
        return b"done"

    srv = ChaincodeServer(slow, ServerConfig(chaincode_id=CHAINCODE_ID, address="127.0.0.1:0"))
    srv.start()
    try:
        with FakePeer(f"127.0.0.1:{srv.port}") as peer:
            first = peer.start("slow", tx_id="same")
            # wait until the first transaction is inside the contract (its GET_STATE was answered)
            handler = srv.handlers[0]
            while ("billing", "same") not in handler._pending:
                threading.Event().wait(0.01)
            peer.send(
                CCM(
                    type=CCM.TRANSACTION,
                    txid="same",
                    channel_id="billing",
                    payload=chaincode_pb2.ChaincodeInput(args=[b"slow"]).SerializeToString(),
                )
            )
            # the fake peer files the refusal under the in-flight txid
            refusal = first.result(timeout=30)
            assert refusal.message.type == CCM.ERROR and b"already running" in refusal.message.payload
            release.set()
            done = None
            for _ in range(3000):
                done = next((m for m in peer.unsolicited if m.type == CCM.COMPLETED), None)
                if done is not None:
                    break
                threading.Event().wait(0.01)
            assert done is not None and done.txid == "same"
    finally:
        release.set()
        srv.stop(grace=None)


def test_stream_loss_fails_waiting_transactions_and_the_server_keeps_serving() -> None:
    entered = threading.Event()

    def blocking(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        if fn == "block":
            entered.set()
            try:
                stub.get_state("never-answered")
            except Exception as exc:  # the shim's PeerError
                return f"failed: {exc}".encode()
        return b"fine"

    srv = ChaincodeServer(blocking, ServerConfig(chaincode_id=CHAINCODE_ID, address="127.0.0.1:0"))
    srv.start()
    try:
        peer = FakePeer(f"127.0.0.1:{srv.port}", fail_keys=[])
        peer._handle = lambda msg: None  # type: ignore[method-assign]  # a peer that stops answering
        peer.start("block")
        assert entered.wait(30)
        peer.close()
        handler = srv.handlers[0]
        for _ in range(3000):
            if not handler._pending:
                break
            threading.Event().wait(0.01)
        assert not handler._pending
        with FakePeer(f"127.0.0.1:{srv.port}") as again:
            assert again.invoke("other").response.payload == b"fine"
    finally:
        srv.stop(grace=None)


def test_server_config_from_env(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="CHAINCODE_ID"):
        ServerConfig.from_env({"CHAINCODE_SERVER_ADDRESS": "127.0.0.1:9999"})
    with pytest.raises(ValueError, match="go together"):
        ServerConfig.from_env(
            {"CHAINCODE_ID": "x", "CHAINCODE_SERVER_ADDRESS": "a:1", "CHAINCODE_TLS_CERT_FILE": __file__}
        )
    cfg = ServerConfig.from_env({"CHAINCODE_ID": "cc:1", "CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999"})
    assert (cfg.chaincode_id, cfg.address, cfg.tls_cert, cfg.workers) == ("cc:1", "0.0.0.0:9999", None, 64)


def test_unsolicited_answer_is_dropped_without_breaking_the_stream(server: ChaincodeServer) -> None:
    with _peer(server, state={"a": b"1"}) as peer:
        peer.send(CCM(type=CCM.RESPONSE, txid="ghost", channel_id="billing"))
        assert peer.invoke("get", [b"a"]).response.payload == b"1"


def test_message_type_enum_matches_fabric(server: ChaincodeServer) -> None:
    # the wire numbers the shim relies on (fabric-protos peer/chaincode_shim.proto)
    assert (pb.ChaincodeMessage.REGISTER, pb.ChaincodeMessage.COMPLETED, pb.ChaincodeMessage.KEEPALIVE) == (
        1,
        6,
        18,
    )


def test_iterators_left_open_are_closed_before_completed_and_later_calls_refused() -> None:
    kept: list[Iterator[tuple[str, bytes]]] = []
    stubs: list[Stub] = []

    def leaky(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        iterator = iter(stub.get_state_by_range("k0", "k9"))
        next(iterator)  # started, then abandoned without close: the contract keeps a reference
        kept.append(iterator)
        stubs.append(stub)
        return b"done"

    srv = ChaincodeServer(leaky, ServerConfig(chaincode_id=CHAINCODE_ID, address="127.0.0.1:0"))
    srv.start()
    try:
        with FakePeer(f"127.0.0.1:{srv.port}", state={f"k{i}": b"x" for i in range(5)}, page_size=2) as peer:
            result = peer.invoke("leak")
            assert result.response.payload == b"done"
            # the shim closed the peer-side iterator itself, inside the transaction
            assert result.requests == [CCM.GET_STATE_BY_RANGE, CCM.QUERY_STATE_CLOSE]
            # touching the stale iterator after the transaction fails fast instead of waiting forever
            with pytest.raises(StopIteration):
                next(kept[0])
            with pytest.raises(PeerError, match="already finished"):
                stubs[0].get_state("k0")
    finally:
        srv.stop(grace=None)


def test_a_peer_that_never_answers_releases_the_worker_with_an_error() -> None:
    srv = ChaincodeServer(toy_invoke, ServerConfig(CHAINCODE_ID, "127.0.0.1:0", answer_timeout=0.5))
    srv.start()
    try:
        with FakePeer(f"127.0.0.1:{srv.port}") as peer:
            silent = peer._handle

            def drop_state_calls(msg: pb.ChaincodeMessage) -> None:
                if msg.type in (CCM.COMPLETED, CCM.ERROR, CCM.KEEPALIVE):
                    silent(msg)  # only the final answer is delivered; GET_STATE is never answered

            peer._handle = drop_state_calls  # type: ignore[method-assign]
            result = peer.invoke("get", [b"a"])
        assert result.response.status == 500
        assert "no answer from the peer to GET_STATE" in result.response.message
    finally:
        srv.stop(grace=None)


def test_key_level_policy_names_peer_principals_like_the_chaincode_policy() -> None:
    """The chaincode's endorsement policy is OR('ProviderMSP.peer','CustomerMSP.peer'); the Fabric gateway
    plans endorsements by principal, so a key policy with MEMBER principals looked like another principal to
    it and endorsement failed on the real network ("failed to collect enough transaction endorsements")."""
    from fabric_protos.common import policies_pb2
    from fabric_protos.msp import msp_principal_pb2

    policy = key_policy_bytes(["ProviderMSP", "CustomerMSP"])
    envelope = policies_pb2.SignaturePolicyEnvelope.FromString(policy)
    roles = {
        (role.msp_identifier, role.role)
        for role in (msp_principal_pb2.MSPRole.FromString(p.principal) for p in envelope.identities)
    }
    peer = msp_principal_pb2.MSPRole.PEER
    assert roles == {("CustomerMSP", peer), ("ProviderMSP", peer)}
