"""network/configupdate.py without Fabric: the read/write sets it computes (configtxlator's rules), the
orgs whose admins a policy needs, and the CRL a retired node key gets (network/hsm_retire.py, ADR 0056).
The real-network checks are tests/fabric/test_consortium_fabric.py and test_hsm_retire.py, where the
orderer accepts (or would refuse) what this computes."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import msp_config_pb2, msp_principal_pb2

from network import configupdate, hsm_retire
from network.configupdate import compute_update, config_of, policy_orgs, update_envelope
from network.procs import NetworkError


def _signature(*msps: str) -> configtx_pb2.ConfigPolicy:
    identities = [
        msp_principal_pb2.MSPPrincipal(
            principal_classification=msp_principal_pb2.MSPPrincipal.ROLE,
            principal=msp_principal_pb2.MSPRole(
                msp_identifier=m, role=msp_principal_pb2.MSPRole.ADMIN
            ).SerializeToString(),
        )
        for m in msps
    ]
    rule = policies_pb2.SignaturePolicy(
        n_out_of=policies_pb2.SignaturePolicy.NOutOf(
            n=len(msps), rules=[policies_pb2.SignaturePolicy(signed_by=i) for i in range(len(msps))]
        )
    )
    envelope = policies_pb2.SignaturePolicyEnvelope(rule=rule, identities=identities)
    policy = policies_pb2.Policy(type=policies_pb2.Policy.SIGNATURE, value=envelope.SerializeToString())
    return configtx_pb2.ConfigPolicy(policy=policy, mod_policy="Admins")


def _org(msp: str, version: int = 0) -> configtx_pb2.ConfigGroup:
    group = configtx_pb2.ConfigGroup(version=version, mod_policy="Admins")
    group.values["MSP"].CopyFrom(configtx_pb2.ConfigValue(value=msp.encode(), mod_policy="Admins"))
    group.policies["Admins"].CopyFrom(_signature(msp))
    return group


def _config() -> configtx_pb2.Config:
    config = configtx_pb2.Config(sequence=3)
    channel = config.channel_group
    channel.values["Capabilities"].CopyFrom(configtx_pb2.ConfigValue(value=b"V3_0", mod_policy="Admins"))
    app = channel.groups["Application"]
    app.version = 1
    app.mod_policy = "Admins"
    app.policies["Admins"].CopyFrom(_signature("ProviderMSP", "CustomerMSP"))
    app.groups["ProviderMSP"].CopyFrom(_org("ProviderMSP", 2))
    app.groups["CustomerMSP"].CopyFrom(_org("CustomerMSP"))
    channel.groups["Orderer"].CopyFrom(_org("OrdererMSP"))
    meta = policies_pb2.ImplicitMetaPolicy(sub_policy="Admins", rule=policies_pb2.ImplicitMetaPolicy.MAJORITY)
    channel.policies["Admins"].CopyFrom(
        configtx_pb2.ConfigPolicy(
            policy=policies_pb2.Policy(type=policies_pb2.Policy.IMPLICIT_META, value=meta.SerializeToString())
        )
    )
    return config


def test_adding_an_org_bumps_the_application_group_and_reads_its_siblings() -> None:
    original = _config()
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    updated.channel_group.groups["Application"].groups["PartnerMSP"].CopyFrom(_org("PartnerMSP"))

    update = compute_update(original, updated, "billing")

    assert update.channel_id == "billing"
    read, write = update.read_set, update.write_set
    assert read.version == write.version == 0 and set(read.groups) == set(write.groups) == {"Application"}
    assert not read.values and not write.values  # the channel's own values are not touched
    app_read, app_write = read.groups["Application"], write.groups["Application"]
    assert (app_read.version, app_write.version, app_write.mod_policy) == (1, 2, "Admins")
    assert set(app_read.groups) == {"ProviderMSP", "CustomerMSP"}
    assert set(app_write.groups) == {"ProviderMSP", "CustomerMSP", "PartnerMSP"}
    assert app_write.groups["ProviderMSP"] == configtx_pb2.ConfigGroup(version=2)  # read at its version
    assert app_write.policies["Admins"] == configtx_pb2.ConfigPolicy(version=0)
    new = app_write.groups["PartnerMSP"]
    assert new.version == 0 and new.mod_policy == "Admins" and new.values["MSP"].value == b"PartnerMSP"


def test_changing_one_value_bumps_only_that_value() -> None:
    original = _config()
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    updated.channel_group.groups["Application"].groups["CustomerMSP"].values["MSP"].value = b"new"

    update = compute_update(original, updated)

    app = update.write_set.groups["Application"]
    assert app.version == 1  # membership unchanged: the group itself is not re-versioned
    customer = app.groups["CustomerMSP"]
    assert (
        customer.version == 0
        and customer.values["MSP"].version == 1
        and customer.values["MSP"].value == b"new"
    )
    assert "ProviderMSP" not in app.groups


def test_identical_configs_are_refused() -> None:
    with pytest.raises(NetworkError, match="no difference"):
        compute_update(_config(), _config())


def test_policy_orgs_signature_and_implicit_meta() -> None:
    config = _config()
    assert policy_orgs(config, ["Application"], "Admins") == ["CustomerMSP", "ProviderMSP"]
    # MAJORITY of the two subgroups (Application, Orderer): both, each resolved to its own Admins
    assert policy_orgs(config, [], "Admins") == ["CustomerMSP", "OrdererMSP", "ProviderMSP"]


def test_update_envelope_and_config_of_round_trip() -> None:
    original = _config()
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    updated.channel_group.groups["Application"].groups["PartnerMSP"].CopyFrom(_org("PartnerMSP"))
    envelope = update_envelope(compute_update(original, updated))
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert (header.type, header.channel_id) == (common_pb2.CONFIG_UPDATE, "billing")
    body = configtx_pb2.ConfigUpdateEnvelope.FromString(payload.data)
    assert not body.signatures  # the admins sign it with `peer channel signconfigtx`
    block = common_pb2.Block()
    config_envelope = configtx_pb2.ConfigEnvelope(config=original)
    config_header = common_pb2.ChannelHeader(type=common_pb2.CONFIG, channel_id="billing")
    block.data.data.append(
        common_pb2.Envelope(
            payload=common_pb2.Payload(
                header=common_pb2.Header(channel_header=config_header.SerializeToString()),
                data=config_envelope.SerializeToString(),
            ).SerializeToString()
        ).SerializeToString()
    )
    assert config_of(block) == original
    with pytest.raises(NetworkError, match="not a config block"):  # the update itself is no config block
        config_of(common_pb2.Block(data=common_pb2.BlockData(data=[envelope.SerializeToString()])))


def _msp_value(name: str, crls: list[bytes] | None = None) -> bytes:
    fabric = msp_config_pb2.FabricMSPConfig(name=name, revocation_list=crls or [])
    return msp_config_pb2.MSPConfig(type=0, config=fabric.SerializeToString()).SerializeToString()


def _msp_config() -> configtx_pb2.Config:
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
    original = _msp_config()
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
    original = _msp_config()
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
        configupdate.compute_update(_msp_config(), _msp_config())
    updated = _msp_config()
    updated.channel_group.values["Capabilities"].value = b"d"
    update = configupdate.compute_update(_msp_config(), updated)
    envelope = configupdate.update_envelope(update)
    assert envelope.signature == b""
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert header.type == common_pb2.HeaderType.CONFIG_UPDATE and header.channel_id == "billing"
    inner = configtx_pb2.ConfigUpdateEnvelope.FromString(payload.data)
    assert configtx_pb2.ConfigUpdate.FromString(inner.config_update) == update and not inner.signatures
    with pytest.raises(NetworkError, match="no org with MSP id"):
        configupdate.org_group(_msp_config(), "NobodyMSP")


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca.customer")])
    now = dt.datetime.now(dt.UTC)
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
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
