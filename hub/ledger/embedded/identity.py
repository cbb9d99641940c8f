"""Org identities of the embedded network: who may sign for which org, and how that is checked offline.

Each org has one or more trusted root certificates, written into the genesis block. A signature counts
for an org when the signing certificate is one of the org's roots or is directly issued by one. When an
injected `Signer` has no certificate of its own (a fresh software or HSM key), the ledger acts as the
org's CA: it makes a self-signed P-256 CA certificate for the org at first start (key kept under
`data_dir/embedded-ca/`) and issues the org's signing certificate for the signer's public key. That is
enough for a single-node ledger and keeps the same certificate-chain check as Fabric's MSP, reduced to
one level.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.keys.signer import Signer, verify_bytes

from .codec import canonical

CERT_VALIDITY = dt.timedelta(days=3650)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def serialize_creator(msp_id: str, certificate_pem: bytes) -> bytes:
    """Canonical form of an identity (Fabric: SerializedIdentity{mspid, id_bytes})."""
    return canonical({"cert": certificate_pem.decode("ascii"), "msp_id": msp_id})


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_org_ca(msp_id: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(f"ca.{msp_id}", msp_id)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    msp_id: str,
    public_key: ec.EllipticCurvePublicKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"peer.{msp_id}", msp_id))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def save_ca_key(directory: Path, msp_id: str, key: ec.EllipticCurvePrivateKey) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{msp_id}.key.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_ca_key(directory: Path, msp_id: str) -> ec.EllipticCurvePrivateKey | None:
    path = directory / f"{msp_id}.key.pem"
    if not path.exists():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC key")
    return key


@dataclass(frozen=True)
class TrustedIdentity:
    msp_id: str
    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey


class TrustStore:
    """The org roots from the genesis block, with a cache of certificates already checked."""

    def __init__(self, roots: dict[str, list[bytes]]) -> None:
        self.roots_pem = {org: list(pems) for org, pems in roots.items()}
        self._roots = {org: [x509.load_pem_x509_certificate(p) for p in pems] for org, pems in roots.items()}
        self._cache: dict[tuple[str, bytes], TrustedIdentity | None] = {}
        self._lock = threading.Lock()

    @property
    def orgs(self) -> list[str]:
        return sorted(self._roots)

    def identity(self, msp_id: str, certificate_pem: bytes) -> TrustedIdentity | None:
        """The identity when `certificate_pem` is trusted for `msp_id`, else None."""
        cache_key = (msp_id, certificate_pem)
        with self._lock:
            if cache_key in self._cache:
                return self._cache[cache_key]
        result = self._check(msp_id, certificate_pem)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = result
        return result

    def _check(self, msp_id: str, certificate_pem: bytes) -> TrustedIdentity | None:
        roots = self._roots.get(msp_id)
        if not roots:
            return None
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            return None
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return None
        for root in roots:
            if cert == root:
                return TrustedIdentity(msp_id, cert, public_key)
            try:
                cert.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return TrustedIdentity(msp_id, cert, public_key)
        return None

    def verify(self, msp_id: str, certificate_pem: bytes, signature: bytes, data: bytes) -> bool:
        """True when `signature` over SHA-256(`data`) is valid and made by an identity of `msp_id`."""
        ident = self.identity(msp_id, certificate_pem)
        return ident is not None and verify_bytes(ident.public_key, signature, data)


def signer_matches(signer: Signer, certificate: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return signer.public_key().public_bytes(enc, fmt) == certificate.public_key().public_bytes(enc, fmt)
