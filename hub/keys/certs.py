"""Certificates for keys that never leave the HSM.

`SignerPrivateKey` is a `cryptography` EC private key whose `sign()` goes to a `Signer`, so the ordinary
`CertificateSigningRequestBuilder` / `CertificateBuilder` produce CSRs and certificates for HSM keys
(cryptography accepts such subclasses, pyca/cryptography#11616). Everything else about a private key
(export, ECDH) is refused: there is nothing to export.

Fabric specifics: the MSP classifies identities by NodeOU, i.e. the `OU` attribute of the subject
(`client`, `peer`, `admin`, `orderer`), so every leaf certificate carries one; the subject key identifier
is Fabric's SKI (SHA-256 of the public point) and the authority key identifier repeats the CA's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.keys.signer import Signer, ski

NodeOU = Literal["client", "peer", "admin", "orderer"]


class SignerPrivateKey(ec.EllipticCurvePrivateKey):
    """Adapts a `Signer` to cryptography's private-key interface (sign only)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._signer.public_key()

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("only ECDSA is supported")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            if not isinstance(algorithm._algorithm, hashes.SHA256):
                raise TypeError("only SHA-256 is supported")
            digest = data
        else:
            if not isinstance(algorithm, hashes.SHA256):
                raise TypeError("only ECDSA with SHA-256 is supported")
            digest = hashlib.sha256(data).digest()
        return self._signer.sign(digest)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("HSM signing keys are sign-only")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError("the private key is inside the HSM and cannot be exported")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise TypeError("the private key is inside the HSM and cannot be exported")

    def __copy__(self) -> SignerPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SignerPrivateKey:
        return self


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def org_name(org: str, common_name: str, node_ou: NodeOU | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
    ]
    if node_ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node_ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _ski_ext(public_key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier(bytes.fromhex(ski(public_key)))


def _aki_from(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ext = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ext)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]


def create_ca(signer: Signer, org: str, *, days: int = 3650) -> x509.Certificate:
    """A self-signed org CA whose key is on the token (embedded ledger, tests, demo)."""
    name = org_name(org, f"ca.{org.lower()}")
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski_ext(signer.public_key()), critical=False)
        .sign(SignerPrivateKey(signer), hashes.SHA256())
    )


def make_csr(signer: Signer, subject: x509.Name) -> x509.CertificateSigningRequest:
    """A CSR signed by the HSM key (for Fabric CA enrolment or any external CA)."""
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        SignerPrivateKey(signer), hashes.SHA256()
    )


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    *,
    days: int = 365,
) -> x509.Certificate:
    """A leaf certificate for `public_key`, signed by `ca_key` (an HSM-backed or a file key)."""
    if public_key.curve.name != "secp256r1":
        raise ValueError("leaf keys must be P-256")
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # never before the CA's own start: Fabric's MSP checks the chain at the leaf's NotBefore + 1 s
        # (FAB-3678), so a leaf backdated past a fresh CA (cryptogen rounds its NotBefore) is refused
        .not_valid_before(max(now - dt.timedelta(minutes=5), ca_cert.not_valid_before_utc))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(_ski_ext(public_key), critical=False)
        .add_extension(_aki_from(ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def issue_from_csr(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, csr: x509.CertificateSigningRequest,
    *, days: int = 365,
) -> x509.Certificate:
    """Issue for a CSR after checking its proof of possession."""
    if not csr.is_signature_valid:
        raise ValueError("CSR signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("CSR key must be EC P-256")
    return issue_certificate(ca_cert, ca_key, public_key, csr.subject, days=days)


def enroll_with_ca(
    ca_cert_pem: bytes | str,
    ca_key_pem_path: str | Path,
    signer: Signer,
    subject: x509.Name | str,
    node_ou: NodeOU = "client",
    *,
    days: int = 365,
) -> x509.Certificate:
    """Enrol an HSM key with a file-held CA (cryptogen's `ca/priv_sk` in a dev Fabric network).

    The CA's key custody is the network's business; the hub's own key stays on the token. The CSR is
    built and verified anyway so the HSM key proves possession. `subject` may be a full Name (its OU is
    replaced by `node_ou`) or just a common name (the org is taken from the CA certificate).
    """
    ca_cert = load_cert(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(Path(ca_key_pem_path).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("CA key must be EC")
    if ca_key.public_key().public_numbers() != ca_cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError("CA key does not match the CA certificate")
    if isinstance(subject, str):
        orgs = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(orgs[0].value) if orgs else "org"
        name = org_name(org, subject, node_ou)
    else:
        attrs = [a for a in subject if a.oid != NameOID.ORGANIZATIONAL_UNIT_NAME]
        cn = [a for a in attrs if a.oid == NameOID.COMMON_NAME]
        rest = [a for a in attrs if a.oid != NameOID.COMMON_NAME]
        name = x509.Name([*rest, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node_ou), *cn])
    csr = make_csr(signer, name)
    # through a Signer so the certificate's own signature is low-S too, like Fabric's tools make them
    from hub.keys.signer import SoftwareSigner

    return issue_from_csr(ca_cert, SignerPrivateKey(SoftwareSigner(ca_key)), csr, days=days)


def node_ou_of(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True if `ca_cert`'s key signed `cert` (chain of one; enough for the embedded ledger and tests)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature included
        return False
    return True


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
