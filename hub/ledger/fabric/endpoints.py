"""Where the Fabric gateways are and how long to wait for them: endpoints, timeouts, gRPC channels."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from hub.ledger.base import LedgerError

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 120_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", 100 * 1024 * 1024),
    ("grpc.max_send_message_length", 100 * 1024 * 1024),
]


class InsecureGateway(LedgerError, ValueError):
    """A gateway endpoint without a TLS root, and plaintext was not explicitly allowed."""


@dataclass(frozen=True)
class GatewayEndpoint:
    """One peer's gateway: address host:port and the TLS root that authenticates it.

    Plaintext only when asked for by name (`insecure=True`): a missing TLS root used to fall back to
    plaintext silently, so a typo in a setting sent signed proposals, and the answers the hub trusts,
    over an unauthenticated channel."""

    address: str
    tls_root_pem: bytes | None = None
    server_name: str | None = None  # TLS name override when the address is not in the cert's SANs
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.tls_root_pem is None and not self.insecure:
            raise InsecureGateway(
                f"gateway {self.address}: no TLS root certificate; set one (LEDGERHUB_FABRIC_TLS_ROOT or "
                "the peer's tls_root_cert in network.json), or allow plaintext explicitly "
                "(LEDGERHUB_FABRIC_INSECURE=1)"
            )


@dataclass(frozen=True)
class Timeouts:
    evaluate: float = 30.0
    endorse: float = 30.0
    submit: float = 30.0
    commit: float = 60.0
    warmup: float = 120.0  # how long to keep polling while discovery warms up ("no peer combination")
    unavailable: float = 10.0  # how long to keep retrying an unreachable gateway before giving up
    # waiting for a commit longer than this, the same signed transaction is submitted again: it finds out
    # whether the orderer is still there (ADR 0038) and re-orders a transaction a crashed orderer lost
    # (the peers keep the first copy of a tx id and mark any later one DUPLICATE_TXID)
    commit_probe: float = 5.0


def open_channel(endpoint: GatewayEndpoint) -> grpc.Channel:
    options = list(CHANNEL_OPTIONS)
    if endpoint.tls_root_pem is None:
        assert endpoint.insecure  # GatewayEndpoint refuses anything else
        return grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.server_name:
        options.append(("grpc.ssl_target_name_override", endpoint.server_name))  # type: ignore[arg-type]
    creds = grpc.ssl_channel_credentials(
        root_certificates=endpoint.tls_root_pem,
        private_key=endpoint.client_key_pem,
        certificate_chain=endpoint.client_cert_pem,
    )
    return grpc.secure_channel(endpoint.address, creds, options=options)
