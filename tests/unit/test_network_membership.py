"""network/membership.py without Fabric (ADR 0063): the member policies a joined or removed org gets, who must
sign under them, and the chaincode's `ListContracts` that `remove-org` asks. The real-network evidence (the
orderer accepting or refusing those signatures, the lifecycle counting the approvals) is in
tests/fabric/test_consortium_fabric.py."""

from __future__ import annotations

import pytest
from fabric_protos.common import configtx_pb2, policies_pb2
from fabric_protos.msp import msp_principal_pb2

from network import membership
from network.procs import NetworkError
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    sample_asset,
    sample_contract,
)

ADMIN, PEER = msp_principal_pb2.MSPRole.ADMIN, msp_principal_pb2.MSPRole.PEER


def _policy(envelope: policies_pb2.SignaturePolicyEnvelope) -> configtx_pb2.ConfigPolicy:
    policy = policies_pb2.Policy(type=policies_pb2.Policy.SIGNATURE, value=envelope.SerializeToString())
    return configtx_pb2.ConfigPolicy(policy=policy, mod_policy="Admins")


def _meta(rule: int, sub: str) -> configtx_pb2.ConfigPolicy:
    meta = policies_pb2.ImplicitMetaPolicy(rule=rule, sub_policy=sub)
    policy = policies_pb2.Policy(type=policies_pb2.Policy.IMPLICIT_META, value=meta.SerializeToString())
    return configtx_pb2.ConfigPolicy(policy=policy, mod_policy="Admins")


def _config(*, implicit: bool = False) -> configtx_pb2.Config:
    """The founding channel's Application section as configtx.yaml renders it (or with ImplicitMeta
    MAJORITY policies), the orgs with their own Admins."""
    config = configtx_pb2.Config()
    app = config.channel_group.groups["Application"]
    app.mod_policy = "Admins"
    founders = ["ProviderMSP", "CustomerMSP"]
    if implicit:
        app.policies["Admins"].CopyFrom(_meta(policies_pb2.ImplicitMetaPolicy.MAJORITY, "Admins"))
        app.policies["Endorsement"].CopyFrom(_meta(policies_pb2.ImplicitMetaPolicy.MAJORITY, "Endorsement"))
    else:
        app.policies["Admins"].CopyFrom(_policy(membership.n_of(2, founders, ADMIN)))
        app.policies["LifecycleEndorsement"].CopyFrom(_policy(membership.n_of(2, founders, PEER)))
        app.policies["Endorsement"].CopyFrom(_policy(membership.n_of(1, founders, PEER)))
    for m in ("ProviderMSP", "CustomerMSP", "AuditorMSP"):
        org = app.groups[m]
        org.policies["Admins"].CopyFrom(_policy(membership.n_of(1, [m], ADMIN)))
        org.policies["Endorsement"].CopyFrom(_policy(membership.n_of(1, [m], PEER)))
    return config


def _with_partner(config: configtx_pb2.Config) -> None:
    org = config.channel_group.groups["Application"].groups["PartnerMSP"]
    org.policies["Admins"].CopyFrom(_policy(membership.n_of(1, ["PartnerMSP"], ADMIN)))
    org.policies["Endorsement"].CopyFrom(_policy(membership.n_of(1, ["PartnerMSP"], PEER)))


def _rule(config: configtx_pb2.Config, name: str) -> tuple[int, list[str]]:
    wrapped = config.channel_group.groups["Application"].policies[name].policy
    envelope = policies_pb2.SignaturePolicyEnvelope.FromString(wrapped.value)
    return envelope.rule.n_out_of.n, membership.named(envelope)


ALL = ["ProviderMSP", "CustomerMSP", "AuditorMSP", "PartnerMSP"]


def test_a_joined_org_enters_each_explicit_policy_with_a_majority_threshold() -> None:
    config = _config()
    founding = config.SerializeToString(deterministic=True)
    changed = membership.set_member_policies(config, add="PartnerMSP")
    members = ["ProviderMSP", "CustomerMSP", "PartnerMSP"]
    assert changed == {"Admins": members, "LifecycleEndorsement": members, "Endorsement": members}
    assert _rule(config, "Admins") == (2, members)
    assert _rule(config, "LifecycleEndorsement") == (2, members)
    assert _rule(config, "Endorsement") == (1, members)
    _with_partner(config)
    # its admin's signature counts: provider + partner suffice, the provider alone does not
    assert membership.satisfied(config, ["Application"], "Admins", ["ProviderMSP", "PartnerMSP"])
    assert not membership.satisfied(config, ["Application"], "Admins", ["ProviderMSP"])
    assert not membership.satisfied(config, ["Application"], "Admins", ["ProviderMSP", "AuditorMSP"])
    # removing it again gives back the founding policies byte for byte (AND of two = 2 of 2)
    del config.channel_group.groups["Application"].groups["PartnerMSP"]
    membership.set_member_policies(config, remove="PartnerMSP")
    assert config.SerializeToString(deterministic=True) == founding


def test_signers_are_a_smallest_set_and_leave_out_the_avoided_org_when_they_can() -> None:
    config = _config()
    assert membership.signers(config, ["Application"], "Admins", ALL) == ["CustomerMSP", "ProviderMSP"]
    membership.set_member_policies(config, add="PartnerMSP")
    _with_partner(config)
    assert membership.signers(config, ["Application"], "Admins", ALL) == ["CustomerMSP", "ProviderMSP"]
    assert membership.signers(config, ["Application"], "Admins", ALL, avoid=["CustomerMSP"]) == [
        "PartnerMSP",
        "ProviderMSP",
    ]
    # the org being removed signs only when the others cannot satisfy the policy without it
    only = ["ProviderMSP", "PartnerMSP"]
    assert membership.signers(config, ["Application"], "Admins", only, avoid=["PartnerMSP"]) == sorted(only)
    with pytest.raises(NetworkError, match="cannot satisfy"):
        membership.signers(config, ["Application"], "Admins", ["ProviderMSP", "AuditorMSP"])


def test_implicit_meta_policies_are_left_alone_and_count_the_org_by_its_group() -> None:
    config = _config(implicit=True)
    before = config.channel_group.groups["Application"].policies["Admins"].SerializeToString()
    assert membership.set_member_policies(config, add="PartnerMSP") == {}
    assert config.channel_group.groups["Application"].policies["Admins"].SerializeToString() == before
    _with_partner(config)  # 4 orgs: MAJORITY = 3 of them
    assert membership.signers(config, ["Application"], "Admins", ALL, avoid=["AuditorMSP"]) == [
        "CustomerMSP",
        "PartnerMSP",
        "ProviderMSP",
    ]
    assert not membership.satisfied(config, ["Application"], "Admins", ["ProviderMSP", "CustomerMSP"])


def test_a_policy_that_would_name_nobody_or_cannot_be_met_is_refused() -> None:
    with pytest.raises(NetworkError, match="cannot be met"):
        membership.n_of(3, ["ProviderMSP", "CustomerMSP"], ADMIN)
    config = _config()
    membership.set_member_policies(config, remove="CustomerMSP")
    with pytest.raises(NetworkError, match="would name no org"):
        membership.set_member_policies(config, remove="ProviderMSP")


def test_list_contracts_answers_the_contracts_of_one_party() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger)
    other = sample_contract(id="ctr-other", assets=["dev-other"], customer="PartnerMSP")
    ledger.submit("RegisterAsset", sample_asset(make_device_key(2), "dev-other"), org=PROVIDER)
    ledger.submit("ProposeContract", other, org=PROVIDER)
    mine = ledger.evaluate("ListContracts", {"party": "PartnerMSP"}, org=PROVIDER)["contracts"]
    assert mine == [{"id": "ctr-other", "status": "PROPOSED", "provider": PROVIDER, "customer": "PartnerMSP"}]
    both = ledger.evaluate("ListContracts", {"party": PROVIDER}, org=CUSTOMER)["contracts"]
    assert [c["id"] for c in both] == sorted(c["id"] for c in both) and len(both) == 2
    assert ledger.evaluate("ListContracts", {"party": "NobodyMSP"})["contracts"] == []
    for bad in ({}, {"party": ""}, {"party": 3}):
        ledger.refuse("ListContracts", bad, "invalid_argument")
