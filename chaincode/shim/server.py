"""The chaincode-as-a-service gRPC server: the peer dials us and calls `protos.Chaincode/Connect`.

Server options matter against a real peer (fabric notes): the peer pings every `chaincode.keepalive`
(default 60 s) even on an idle connection, and gRPC's default policy answers that with GOAWAY
too_many_pings; and SO_REUSEPORT would let a stale server on the same port take half the connections.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from fabric_protos.peer import chaincode_shim_pb2, chaincode_shim_pb2_grpc

from chaincode.shim.handler import Invoke, StreamHandler

log = logging.getLogger(__name__)

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 100 * 1024 * 1024),
    ("grpc.max_send_message_length", 100 * 1024 * 1024),
]


@dataclass(frozen=True)
class ServerConfig:
    chaincode_id: str
    address: str
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None  # when set, the peer must present a client certificate
    workers: int = 64
    # every Connect stream holds one gRPC server thread for its whole life; a peer may open several
    max_streams: int = 64
    answer_timeout: float = 120.0  # seconds a transaction waits for the peer's answer to one request

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerConfig:
        """CHAINCODE_ID, CHAINCODE_SERVER_ADDRESS; optional CHAINCODE_TLS_CERT_FILE, CHAINCODE_TLS_KEY_FILE,
        CHAINCODE_TLS_CLIENT_CA_FILE, CHAINCODE_WORKERS (concurrent transactions), CHAINCODE_MAX_STREAMS."""
        env = dict(os.environ if env is None else env)
        missing = [n for n in ("CHAINCODE_ID", "CHAINCODE_SERVER_ADDRESS") if not env.get(n)]
        if missing:
            raise ValueError(f"missing environment: {', '.join(missing)}")

        def read(name: str) -> bytes | None:
            path = env.get(name)
            return Path(path).read_bytes() if path else None

        cert, key = read("CHAINCODE_TLS_CERT_FILE"), read("CHAINCODE_TLS_KEY_FILE")
        if (cert is None) != (key is None):
            raise ValueError("CHAINCODE_TLS_CERT_FILE and CHAINCODE_TLS_KEY_FILE go together")
        return cls(
            chaincode_id=env["CHAINCODE_ID"],
            address=env["CHAINCODE_SERVER_ADDRESS"],
            tls_cert=cert,
            tls_key=key,
            tls_client_ca=read("CHAINCODE_TLS_CLIENT_CA_FILE"),
            workers=int(env.get("CHAINCODE_WORKERS", "64")),
            max_streams=int(env.get("CHAINCODE_MAX_STREAMS", "64")),
        )


class _Servicer(chaincode_shim_pb2_grpc.ChaincodeServicer):
    def __init__(self, server: ChaincodeServer) -> None:
        self._server = server

    def Connect(
        self, request_iterator: Iterator[chaincode_shim_pb2.ChaincodeMessage], context: grpc.ServicerContext
    ) -> Iterator[chaincode_shim_pb2.ChaincodeMessage]:
        config = self._server.config
        handler = StreamHandler(
            self._server.invoke,
            config.chaincode_id,
            self._server.executor,
            answer_timeout=config.answer_timeout,
        )
        context.add_callback(handler.close)
        log.info("peer stream opened from %s", context.peer())
        self._server.track(handler)
        reader = threading.Thread(target=handler.serve, args=(request_iterator,), daemon=True)
        reader.start()
        yield from handler.messages()


class ChaincodeServer:
    """Serves `invoke` to any number of peers. `start()` binds and returns; `stop()` ends everything."""

    def __init__(
        self, invoke: Invoke, config: ServerConfig, options: Sequence[tuple[str, int]] = tuple(SERVER_OPTIONS)
    ) -> None:
        self.invoke = invoke
        self.config = config
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="cc-tx")
        # beyond max_streams a new stream is refused (RESOURCE_EXHAUSTED) instead of waiting for a thread
        self._stream_pool = ThreadPoolExecutor(max_workers=config.max_streams, thread_name_prefix="cc-stream")
        self._grpc = grpc.server(
            self._stream_pool,
            options=list(options),
            maximum_concurrent_rpcs=config.max_streams,
        )
        chaincode_shim_pb2_grpc.add_ChaincodeServicer_to_server(_Servicer(self), self._grpc)
        self._handlers: list[StreamHandler] = []
        self._lock = threading.Lock()
        self.port = 0

    def track(self, handler: StreamHandler) -> None:
        with self._lock:
            self._handlers.append(handler)

    @property
    def handlers(self) -> list[StreamHandler]:
        with self._lock:
            return list(self._handlers)

    def start(self) -> int:
        """Bind and serve; returns the port. OSError when the address cannot be bound."""
        cfg = self.config
        try:
            if cfg.tls_cert and cfg.tls_key:
                creds = grpc.ssl_server_credentials(
                    [(cfg.tls_key, cfg.tls_cert)],
                    root_certificates=cfg.tls_client_ca,
                    require_client_auth=cfg.tls_client_ca is not None,
                )
                self.port = self._grpc.add_secure_port(cfg.address, creds)
            else:
                self.port = self._grpc.add_insecure_port(cfg.address)
        except RuntimeError:  # grpcio >= 1.50 raises where older versions returned port 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot bind chaincode server to {cfg.address}")
        self._grpc.start()
        log.info("chaincode %s listening on %s", cfg.chaincode_id, cfg.address)
        return self.port

    def wait(self) -> None:
        self._grpc.wait_for_termination()

    def stop(self, grace: float | None = 1.0) -> None:
        for handler in self.handlers:
            handler.close()
        self._grpc.stop(grace).wait()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stream_pool.shutdown(wait=False, cancel_futures=True)  # grpc.server never shuts it down
