"""Many transactions in flight on one stream: they run in parallel, answers reach the right transaction,
and the one-writer rule holds (gRPC would fail the stream otherwise)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from chaincode.shim import ChaincodeServer, ServerConfig
from chaincode.stub import Stub
from tests.helpers.fake_peer import CCM, FakePeer

N = 200


def test_two_hundred_concurrent_transactions_each_get_their_own_answers() -> None:
    # Every transaction waits at a barrier with 50 others after its first read: if the shim ran
    # transactions one at a time, or blocked its reader on a transaction, the barrier would break.
    barrier = threading.Barrier(50, timeout=60)

    def contract(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        key = args[0].decode()
        value = stub.get_state(key)
        barrier.wait()
        stub.put_state(f"out-{key}", (value or b"") + b"!")
        again = stub.get_state(key)
        stub.set_event("Done", key.encode())
        return (again or b"") + b"|" + stub.tx_id.encode()

    srv = ChaincodeServer(contract, ServerConfig(chaincode_id="cc:1", address="127.0.0.1:0", workers=100))
    srv.start()
    try:
        state = {f"k{i}": f"v{i}".encode() for i in range(N)}
        with FakePeer(f"127.0.0.1:{srv.port}", state=state) as peer:
            futures = {i: peer.start("go", [f"k{i}".encode()], tx_id=f"tx{i}") for i in range(N)}
            results = {i: f.result(timeout=120) for i, f in futures.items()}
    finally:
        srv.stop(grace=None)
    for i, result in results.items():
        assert result.message.type == CCM.COMPLETED
        assert result.response.status == 200
        assert result.response.payload == f"v{i}|tx{i}".encode()
        assert result.writes == {f"out-k{i}": f"v{i}!".encode()}
        assert result.message.chaincode_event.payload == f"k{i}".encode()


def test_many_peer_streams_at_once_each_served() -> None:
    """Some peers open several Connect streams each; every stream holds a server thread."""

    def echo(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
        return (stub.get_state("k") or b"") + fn.encode()

    srv = ChaincodeServer(echo, ServerConfig(chaincode_id="cc:1", address="127.0.0.1:0", max_streams=40))
    srv.start()
    peers = []
    try:
        peers = [FakePeer(f"127.0.0.1:{srv.port}", state={"k": str(i).encode()}) for i in range(30)]
        futures = [p.start(f"-{i}") for i, p in enumerate(peers)]
        assert [f.result(timeout=60).response.payload for f in futures] == [
            f"{i}-{i}".encode() for i in range(30)
        ]
        assert len(srv.handlers) == 30
    finally:
        for p in peers:
            p.close()
        srv.stop(grace=None)
