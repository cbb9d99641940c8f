"""The config-update delta (network/configupdate.py, ADR 0056) and the CRL it carries for a retired node key
(network/hsm_retire.py). The network itself accepting these is tests/fabric/test_hsm_retire.py."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import msp_config_pb2

from network import configupdate, hsm_retire
from network.procs import NetworkError


def _msp_value(name: str, crls: list[bytes] | None = None) -> bytes:
    fabric = msp_config_pb2.FabricMSPConfig(name=name, revocation_list=crls or [])
    return msp_config_pb2.MSPConfig(type=0, config=fabric.SerializeToString()).SerializeToString()


def _config() -> configtx_pb2.Config:
    config = configtx_pb2.Config(sequence=3)
    channel = config.channel_group
    channel.version = 2
    channel.mod_policy = "Admins"
    app = channel.groups["Application"]
    app.version = 1
    app.mod_policy = "Admins"
    for i, name in enumerate(("ProviderMSP", "CustomerMSP")):
        org = app.groups[name]
        org.version = i
        org.mod_policy = "Admins"
        org.values["MSP"].CopyFrom(
            configtx_pb2.ConfigValue(version=4, mod_policy="Admins", value=_msp_value(name))
        )
        org.policies["Admins"].version = 0
    channel.values["Capabilities"].CopyFrom(
        configtx_pb2.ConfigValue(version=0, mod_policy="Admins", value=b"c")
    )
    return config


def test_a_changed_value_is_written_at_version_plus_one_and_its_groups_keep_their_versions() -> None:
    original = _config()
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    org = configupdate.org_group(updated, "CustomerMSP")
    configupdate.edit_msp(org, lambda f: f.revocation_list.append(b"crl"))
    update = configupdate.compute_update(original, updated)
    assert update.channel_id == "billing"
    w = update.write_set
    assert w.version == 2 and w.groups["Application"].version == 1
    assert set(w.groups["Application"].groups) == {"CustomerMSP"}  # the untouched org is not in the update
    org_w = w.groups["Application"].groups["CustomerMSP"]
    assert org_w.version == 1 and set(org_w.values) == {"MSP"} and not org_w.policies
    assert org_w.values["MSP"].version == 5 and org_w.values["MSP"].mod_policy == "Admins"
    assert configupdate.msp_id(org_w) == "CustomerMSP"
    r = update.read_set
    assert r.version == 2 and r.groups["Application"].groups["CustomerMSP"].version == 1
    assert not r.groups["Application"].groups["CustomerMSP"].values  # a modified value is not read
    assert not w.values and not r.values  # Capabilities unchanged: in neither set


def test_a_new_group_changes_membership_so_the_parent_lists_its_unchanged_members() -> None:
    original = _config()
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    app = updated.channel_group.groups["Application"]
    app.groups["AuditorMSP"].mod_policy = "Admins"
    app.groups["AuditorMSP"].values["MSP"].CopyFrom(configtx_pb2.ConfigValue(value=_msp_value("AuditorMSP")))
    update = configupdate.compute_update(original, updated)
    app_w, app_r = update.write_set.groups["Application"], update.read_set.groups["Application"]
    assert app_w.version == 2 and app_w.mod_policy == "Admins"
    assert app_w.groups["AuditorMSP"].version == 0 and app_w.groups["AuditorMSP"].values["MSP"].version == 0
    assert app_w.groups["ProviderMSP"].version == 0 and not app_w.groups["ProviderMSP"].values
    assert app_r.groups["CustomerMSP"].version == 1 and "AuditorMSP" not in app_r.groups
    assert update.write_set.version == 2  # the channel group itself only contains the change


def test_no_difference_is_refused_and_the_envelope_is_an_unsigned_config_update() -> None:
    with pytest.raises(NetworkError, match="no difference"):
        configupdate.compute_update(_config(), _config())
    updated = _config()
    updated.channel_group.values["Capabilities"].value = b"d"
    update = configupdate.compute_update(_config(), updated)
    envelope = configupdate.update_envelope(update)
    assert envelope.signature == b""
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert header.type == common_pb2.HeaderType.CONFIG_UPDATE and header.channel_id == "billing"
    inner = configtx_pb2.ConfigUpdateEnvelope.FromString(payload.data)
    assert configtx_pb2.ConfigUpdate.FromString(inner.config_update) == update and not inner.signatures
    with pytest.raises(NetworkError, match="no org with MSP id"):
        configupdate.org_group(_config(), "NobodyMSP")


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca.customer")])
    now = dt.datetime.now(dt.UTC)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    import hashlib

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier(hashlib.sha256(point).digest()), False)  # cryptogen's SKI
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_the_crl_names_the_ca_by_its_ski_and_accumulates_serials_per_ca() -> None:
    ca, key = _ca()
    other, other_key = _ca()
    foreign = hsm_retire.build_crl(other, other_key, {99}, 1).public_bytes(serialization.Encoding.PEM)
    fabric = msp_config_pb2.FabricMSPConfig(name="CustomerMSP", revocation_list=[foreign])
    assert hsm_retire.revoke_in_msp(fabric, ca, key, {7}) == {7}
    assert hsm_retire.revoke_in_msp(fabric, ca, key, {8}) == {7, 8}  # replaces its own CRL, keeps others
    assert len(fabric.revocation_list) == 2 and bytes(fabric.revocation_list[0]) == foreign
    crl = x509.load_pem_x509_crl(bytes(fabric.revocation_list[1]))
    assert crl.is_signature_valid(ca.public_key())
    assert not crl.is_signature_valid(other.public_key())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert {r.serial_number for r in crl} == {7, 8}
