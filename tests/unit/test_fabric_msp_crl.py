"""The offline verifier's CRL rule (hub.audit.fabric_msp.revoked_by) is Fabric's (msp/mspimplvalidate.go): a
certificate is revoked by a CRL whose AuthorityKeyIdentifier is its issuer's SubjectKeyIdentifier, that lists
its serial number and that its issuer signed. A CRL naming the issuer but signed by someone else is skipped
(before, the verifier matched the CRL's issuer *name* alone and would have trusted such a CRL). The network's
side of it is tests/fabric/test_hsm_retire.py."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.audit.fabric_msp import revoked_by

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str = "ca.customer") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"peer{serial}")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(serial).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )


def _crl(issuer: x509.Certificate, signer: ec.EllipticCurvePrivateKey, serials: list[int],
         aki_of: x509.Certificate | None = None) -> x509.CertificateRevocationList:
    named = aki_of or issuer
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject).last_update(NOW).next_update(NOW + dt.timedelta(days=30))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(named.public_key()), critical=False)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        )
    return builder.sign(signer, hashes.SHA256())


def test_a_crl_of_the_issuer_signed_by_it_revokes_the_serials_it_lists() -> None:
    ca, key = _ca()
    old, new = _leaf(ca, key, 7), _leaf(ca, key, 8)
    crls = [_crl(ca, key, [7])]
    assert revoked_by(crls, old, ca)
    assert not revoked_by(crls, new, ca)
    assert not revoked_by([], old, ca)


def test_a_crl_naming_the_issuer_but_signed_by_another_key_is_skipped() -> None:
    ca, key = _ca()
    _, forger = _ca()
    leaf = _leaf(ca, key, 7)
    assert not revoked_by([_crl(ca, forger, [7])], leaf, ca)  # same issuer name and AKI, wrong signature


def test_a_crl_of_another_ca_with_the_same_name_does_not_apply() -> None:
    ca, key = _ca()
    twin, twin_key = _ca()  # same subject name, another key: its CRL's AKI is its own SKI
    leaf = _leaf(ca, key, 7)
    assert not revoked_by([_crl(twin, twin_key, [7])], leaf, ca)
    assert revoked_by([_crl(twin, twin_key, [7]), _crl(ca, key, [7])], leaf, ca)
