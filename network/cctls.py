"""TLS material for the peer-to-chaincode connection (chaincode as a service).

With CCaaS the peer dials the chaincode server. To keep "TLS everywhere" on that hop too, each network run
makes a small dedicated CA and issues two certificates from it: the chaincode server's (SANs 127.0.0.1 and
localhost) and one client certificate that every peer presents (mutual TLS; the server only accepts
clients of this CA). The peer learns the CA and its client pair from connection.json inside the package,
so the package id changes with every run, which is fine: the id is handed to the caller.

A dedicated CA rather than an org's TLS CA: the chaincode server is shared by the peers of all three orgs,
and issuing it from one org's CA would make that org's TLS CA vouch for a service it does not own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ChaincodeTLS:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_env(self) -> dict[str, str]:
        """The variables `python -m chaincode` (chaincode.shim.ServerConfig.from_env) reads."""
        return {
            "CHAINCODE_TLS_CERT_FILE": str(self.server_cert),
            "CHAINCODE_TLS_KEY_FILE": str(self.server_key),
            "CHAINCODE_TLS_CLIENT_CA_FILE": str(self.ca_cert),
        }


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LedgerHub dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    cn: str,
    usage: x509.ObjectIdentifier,
    now: dt.datetime,
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_chaincode_tls(directory: Path) -> ChaincodeTLS:
    """Create the CA, the server pair and the peers' client pair under `directory` (mode 0600 keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ledgerhub-chaincode-tls-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_cert, server_key = _issue(
        ca_key, ca_name, "chaincode.ledgerhub.local", ExtendedKeyUsageOID.SERVER_AUTH, now
    )
    client_cert, client_key = _issue(
        ca_key, ca_name, "peer-client.ledgerhub.local", ExtendedKeyUsageOID.CLIENT_AUTH, now
    )
    tls = ChaincodeTLS(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    tls.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.server_cert.write_bytes(server_cert)
    tls.client_cert.write_bytes(client_cert)
    for path, data in ((tls.server_key, server_key), (tls.client_key, client_key)):
        path.write_bytes(data)
        path.chmod(0o600)
    return tls
