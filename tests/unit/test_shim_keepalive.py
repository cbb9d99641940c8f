"""The server's keepalive policy: a peer that pings an idle connection keeps its stream.

gRPC's default server policy answers frequent pings on an idle connection with GOAWAY too_many_pings
(what fabric-chaincode-python does under a real peer's 60 s pings). Here the fake peer pings every 200 ms,
so the default policy's strike limit is reached within a second; the shim's options must survive it. The
second case runs the same scenario with gRPC's defaults to show the test can tell the difference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from chaincode.shim import SERVER_OPTIONS, ChaincodeServer, ServerConfig
from chaincode.stub import Stub
from tests.helpers.fake_peer import FakePeer

AGGRESSIVE_PINGS = [
    ("grpc.keepalive_time_ms", 200),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
IDLE_SECONDS = 3  # fifteen pings: far past the default policy's two strikes


def _ok(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
    return b"ok"


def _server(options: Sequence[tuple[str, int]]) -> ChaincodeServer:
    srv = ChaincodeServer(_ok, ServerConfig("cc:1", "127.0.0.1:0"), options=options)
    srv.start()
    return srv


def test_idle_stream_with_frequent_pings_survives_with_the_shim_options() -> None:
    srv = _server(SERVER_OPTIONS)
    try:
        with FakePeer(f"127.0.0.1:{srv.port}", channel_options=AGGRESSIVE_PINGS) as peer:
            assert peer.invoke("a").response.payload == b"ok"
            handler = srv.handlers[0]
            time.sleep(IDLE_SECONDS)  # the subject is the idle period itself
            assert peer.invoke("b").response.payload == b"ok"
            assert srv.handlers == [handler]  # same stream, never re-opened
            assert not handler._closed
    finally:
        srv.stop(grace=None)


def test_the_same_pings_kill_a_default_grpc_server_stream() -> None:
    srv = _server([("grpc.so_reuseport", 0)])
    closed = threading.Event()
    try:
        peer = FakePeer(f"127.0.0.1:{srv.port}", channel_options=AGGRESSIVE_PINGS)
        assert peer.invoke("a").response.payload == b"ok"
        handler = srv.handlers[0]
        for _ in range(600):  # poll for the GOAWAY (bounded, so a regression fails instead of hanging)
            if handler._closed:
                closed.set()
                break
            time.sleep(0.05)
        peer.close()
        assert closed.is_set(), (
            "default keepalive policy did not end the stream: the test above proves nothing"
        )
    finally:
        srv.stop(grace=None)


def test_a_second_server_cannot_take_the_same_port() -> None:
    first = _server(SERVER_OPTIONS)
    try:
        second = ChaincodeServer(_ok, ServerConfig("cc:1", f"127.0.0.1:{first.port}"))
        try:
            second.start()
        except OSError:
            pass  # refused (a bind failure is OSError): no stale server can share the peer's connections
        else:
            second.stop(grace=None)
            raise AssertionError("two chaincode servers bound the same port (SO_REUSEPORT on)")
    finally:
        first.stop(grace=None)
