"""CSRs and certificates for keys on the token; enrolment with a file-held (cryptogen) org CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.keys.certs import (
    SignerPrivateKey,
    create_ca,
    enroll_with_ca,
    issue_from_csr,
    make_csr,
    node_ou_of,
    org_name,
    verify_issued_by,
)
from hub.keys.signer import ski

pytestmark = [pytest.mark.integration, pytest.mark.hsm]


def _cryptogen_like_ca(
    tmp_path: Path, org: str = "ProviderMSP"
) -> tuple[bytes, Path, ec.EllipticCurvePrivateKey]:
    """A CA like cryptogen writes: ca/ca.<org>-cert.pem and ca/priv_sk (PKCS#8 PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"ca.{org.lower()}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(bytes.fromhex(ski(key.public_key()))), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ca").mkdir()
    key_path = tmp_path / "ca" / "priv_sk"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert.public_bytes(serialization.Encoding.PEM), key_path, key


def test_csr_signed_on_the_token_verifies(hsm_token) -> None:
    signer = hsm_token.generate_ec_key("hub-csr#v1")
    csr = make_csr(signer, org_name("ProviderMSP", "hub.providermsp", "client"))
    assert csr.is_signature_valid
    assert csr.public_key().public_numbers() == signer.public_key().public_numbers()


def test_ca_on_the_token_issues_a_leaf_for_another_token_key(hsm_token) -> None:
    ca_signer = hsm_token.generate_ec_key("hub-ca-test#v1")
    ca = create_ca(ca_signer, "ProviderMSP")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)  # self-signed by the HSM key
    leaf_signer = hsm_token.generate_ec_key("hub-leaf-test#v1")
    csr = make_csr(leaf_signer, org_name("ProviderMSP", "x", "peer"))
    leaf = issue_from_csr(ca, SignerPrivateKey(ca_signer), csr)
    assert verify_issued_by(leaf, ca)
    assert node_ou_of(leaf) == ["peer"]
    ski_ext = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski_ext.digest.hex() == leaf_signer.key_id  # Fabric SKI, not the RFC 5280 SHA-1
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier.hex() == ca_signer.key_id


def test_enroll_with_a_cryptogen_ca_file(hsm_token, tmp_path: Path) -> None:
    ca_pem, key_path, _ = _cryptogen_like_ca(tmp_path)
    signer = hsm_token.generate_ec_key("hub-client-ProviderMSP#v1")
    cert = enroll_with_ca(ca_pem, key_path, signer, "hub", node_ou="client")
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert verify_issued_by(cert, ca)
    assert node_ou_of(cert) == ["client"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "ProviderMSP"
    assert cert.public_key().public_numbers() == signer.public_key().public_numbers()
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    subject = org_name("ProviderMSP", "peer0", "client")
    peer = enroll_with_ca(ca_pem, key_path, signer, subject, node_ou="peer")
    assert node_ou_of(peer) == ["peer"]


def test_enroll_refuses_a_ca_key_that_does_not_match(hsm_token, tmp_path: Path) -> None:
    ca_pem, _, _ = _cryptogen_like_ca(tmp_path)
    other = tmp_path / "other_sk"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signer = hsm_token.generate_ec_key("hub-mismatch#v1")
    with pytest.raises(ValueError, match="does not match"):
        enroll_with_ca(ca_pem, other, signer, "hub")


def test_manager_enrolls_externally_and_rotation_reenrols(tmp_path: Path, hsm_token) -> None:
    from hub.keys.manager import KeyManager, Pkcs11Backend

    ca_pem, key_path, _ = _cryptogen_like_ca(tmp_path)
    (tmp_path / "ca" / "ca-cert.pem").write_bytes(ca_pem)
    manager = KeyManager(tmp_path / "keys", Pkcs11Backend(hsm_token))
    manager.ensure_org_keys(["ProviderMSP"])
    manager.enroll_external("client-ProviderMSP", tmp_path / "ca" / "ca-cert.pem", key_path)
    fabric_ca = x509.load_pem_x509_certificate(ca_pem)
    assert verify_issued_by(manager.certificate("client-ProviderMSP"), fabric_ca)
    manager.rotate("client-ProviderMSP")
    v2 = manager.certificate("client-ProviderMSP")
    assert verify_issued_by(v2, fabric_ca) and node_ou_of(v2) == ["client"]
    assert manager.signer("client-ProviderMSP").certificate() == v2
    manager.close()


def test_fabric_mode_signers_are_enrolled_with_the_network_ca(hsm_env, tmp_path: Path) -> None:
    """network.json names the cryptogen client MSP; its org's CA enrols the hub's HSM client key."""
    import json

    from hub.config import Settings
    from hub.keys import build_identities, build_signers
    from hub.keys.signer import sign_bytes, verify_bytes

    org_dir = tmp_path / "crypto" / "peerOrganizations" / "provider.ledgerhub.local"
    org_dir.mkdir(parents=True)
    ca_pem, _, _ = _cryptogen_like_ca(org_dir)
    (org_dir / "ca" / "ca.provider.ledgerhub.local-cert.pem").write_bytes(ca_pem)
    msp_dir = org_dir / "users" / "User1@provider.ledgerhub.local" / "msp"
    msp_dir.mkdir(parents=True)
    elsewhere = str(tmp_path / "x/y/z/msp")
    network = {"orgs": {"provider": {"mspid": "ProviderMSP", "client": {"msp_dir": str(msp_dir)}},
                        "customer": {"mspid": "CustomerMSP", "client": {"msp_dir": elsewhere}}}}
    (tmp_path / "network.json").write_text(json.dumps(network))
    settings = Settings(data_dir=tmp_path / "data", signer="pkcs11", ledger="fabric",
                        fabric_network_dir=tmp_path, pkcs11_token_label=hsm_env.token_label,
                        pkcs11_pin=hsm_env.pin)
    signers = build_signers(settings)
    assert set(signers) == {"ProviderMSP"}  # no CA files for CustomerMSP: the network's identity is used
    cert = signers["ProviderMSP"].certificate()
    assert verify_issued_by(cert, x509.load_pem_x509_certificate(ca_pem)) and node_ou_of(cert) == ["client"]
    assert verify_bytes(cert.public_key(), sign_bytes(signers["ProviderMSP"], b"proposal"), b"proposal")
    again = build_signers(settings)  # already enrolled: same certificate, no re-issue
    assert again["ProviderMSP"].certificate() == cert
    msp, id_cert, _ = build_identities(settings)["ProviderMSP"]
    assert msp == "ProviderMSP" and id_cert == cert
