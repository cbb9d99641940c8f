"""network/configupdate.py without Fabric: the read/write sets it computes (configtxlator's rules) and the
orgs whose admins a policy needs. The real-network check is tests/fabric/test_consortium_fabric.py, where
the orderer accepts (or would refuse) what this computes."""

from __future__ import annotations

import pytest
from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import msp_principal_pb2

from network.configupdate import compute_update, config_of, policy_orgs, update_envelope


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
    with pytest.raises(ValueError, match="no differences"):
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
    block.data.data.append(
        common_pb2.Envelope(
            payload=common_pb2.Payload(data=config_envelope.SerializeToString()).SerializeToString()
        ).SerializeToString()
    )
    assert config_of(block) == original
