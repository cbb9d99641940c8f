"""Who signs for an org on Fabric: MSP id, X.509 certificate (PEM) and a `Signer` holding the key.

The certificate travels in every proposal as `msp.SerializedIdentity{mspid, id_bytes = PEM}`; the key never
leaves the signer (software for dev networks built with cryptogen, PKCS#11 in production).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.msp import identities_pb2

from hub.keys.signer import Signer, SoftwareSigner, sign_bytes


@dataclass(frozen=True)
class FabricIdentity:
    msp_id: str
    certificate_pem: bytes
    signer: Signer

    def serialized(self) -> bytes:
        """`SerializedIdentity` bytes: the `creator` of proposals and the `identity` of gateway requests."""
        return identities_pb2.SerializedIdentity(
            mspid=self.msp_id, id_bytes=self.certificate_pem
        ).SerializeToString()

    def sign(self, data: bytes) -> bytes:
        """DER, low-S ECDSA over SHA-256(data), as every Fabric signature."""
        return sign_bytes(self.signer, data)


def identity_from_signer(msp_id: str, signer: Signer) -> FabricIdentity:
    cert = signer.certificate()
    if cert is None:
        raise ValueError(f"signer for {msp_id} has no certificate")
    return FabricIdentity(msp_id, cert.public_bytes(serialization.Encoding.PEM), signer)


def load_msp_identity(msp_id: str, msp_dir: Path) -> FabricIdentity:
    """A cryptogen/fabric-ca MSP folder: `signcerts/*.pem` and `keystore/*` (PKCS#8 PEM). Dev networks only:
    the key is read into process memory."""
    certs = sorted((msp_dir / "signcerts").glob("*.pem"))
    keys = sorted(p for p in (msp_dir / "keystore").iterdir() if p.is_file())
    if not certs or not keys:
        raise FileNotFoundError(f"no certificate or key under {msp_dir}")
    cert_pem = certs[0].read_bytes()
    key = serialization.load_pem_private_key(keys[0].read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{keys[0]} is not an EC key")
    signer = SoftwareSigner(key, x509.load_pem_x509_certificate(cert_pem))
    return FabricIdentity(msp_id, cert_pem, signer)
