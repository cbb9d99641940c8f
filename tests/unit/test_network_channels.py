"""More channels (network/channels.py, ADR 0067) without Fabric: the channel profile rendered from
`billing`'s, who is on which channel, and add-channel's refusals (the real-network tests:
tests/fabric/test_channels_fabric.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from network import channels
from network.channels import ChannelRefused, add_channel
from network.cli import app
from network.layout import Layout, render_all
from network.procs import NetworkError

JOINED = [
    {"key": "solo", "mspid": "SoloMSP", "domain": "solo.ledgerhub.local", "slot": 0, "own_channel": True}
]


def _network(tmp_path: Path) -> Layout:
    """A run dir as `up` + add-org leave it (rendered configs, network.json, orgs.json), no processes."""
    layout = Layout(run_dir=tmp_path, port_base=30000)
    (tmp_path / "orgs.json").write_text(json.dumps(JOINED))
    render_all(layout)
    info = {
        "port_base": 30000,
        "channel": "billing",
        "channels": {"billing": {"orgs": ["ProviderMSP", "CustomerMSP", "AuditorMSP"]}},
        "orgs": {o.key: {"mspid": o.mspid} for o in layout.orgs},
        "chaincode": {"package_id": "billing_1:abc", "label": "billing_1"},
    }
    (tmp_path / "network.json").write_text(json.dumps(info))
    return layout


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["Billing", "1pair", "pair_one", "", "-pair", "a" * 250, "pair one"])
def test_a_bad_channel_name_is_refused_before_anything_is_read(tmp_path: Path, name: str) -> None:
    with pytest.raises(ChannelRefused, match="channel name"):
        add_channel(tmp_path, name, ["provider", "customer"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["billing-solo", "a", "pair.2026-12", "b" * 249])
def test_fabric_channel_names_pass(name: str) -> None:
    channels.check_name(name)


@pytest.mark.parametrize(
    ("orgs", "message"),
    [
        (["provider", "nobody"], r"unknown org\(s\) \['nobody'\]"),
        (["provider", "OtherMSP"], r"unknown org\(s\) \['OtherMSP'\]"),
        (["provider"], "at least two peer orgs"),
        (["provider", "ProviderMSP"], "at least two peer orgs"),  # the same org by key and MSP id
        ([], "at least two peer orgs"),
    ],
)
def test_bad_members_are_refused_and_nothing_changes(tmp_path: Path, orgs: list[str], message: str) -> None:
    _network(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ChannelRefused, match=message):
        add_channel(tmp_path, "pair", orgs)
    assert _snapshot(tmp_path) == before


def test_an_existing_channel_with_other_members_is_refused(tmp_path: Path) -> None:
    _network(tmp_path)
    info = json.loads((tmp_path / "network.json").read_text())
    info["channels"]["billing-solo"] = {"orgs": ["ProviderMSP", "SoloMSP", "AuditorMSP"]}
    (tmp_path / "network.json").write_text(json.dumps(info))
    before = _snapshot(tmp_path)
    with pytest.raises(ChannelRefused, match=r"exists with members"):
        add_channel(tmp_path, "billing-solo", ["provider", "customer", "auditor"])
    with pytest.raises(ChannelRefused, match=r"exists with members"):
        add_channel(tmp_path, "billing", ["provider", "solo"])  # the default channel too
    assert _snapshot(tmp_path) == before


def test_the_refusals_are_value_errors_and_network_errors() -> None:
    assert issubclass(ChannelRefused, ValueError) and issubclass(ChannelRefused, NetworkError)


def test_the_profile_is_billings_with_the_members_and_their_policies(tmp_path: Path) -> None:
    layout = _network(tmp_path)
    picked = channels.resolve(layout, ["AuditorMSP", "solo", "provider"])  # any order, keys or MSP ids
    assert [o.key for o in picked] == ["provider", "auditor", "solo"]
    work = channels.render_profile(layout, "billing-solo", picked)
    doc = yaml.safe_load((work / "configtx.yaml").read_text())
    billing = yaml.safe_load((layout.config_dir / "configtx.yaml").read_text())["Profiles"]["BillingChannel"]
    profile = doc["Profiles"]["BillingChannel"]
    # orderer (block cutting, Raft), channel policies and capabilities exactly as `billing` has them
    assert profile["Orderer"] == billing["Orderer"]
    assert profile["Policies"] == billing["Policies"] and profile["Capabilities"] == billing["Capabilities"]
    application = profile["Application"]
    assert application["Capabilities"] == billing["Application"]["Capabilities"]
    assert [o["ID"] for o in application["Organizations"]] == ["ProviderMSP", "AuditorMSP", "SoloMSP"]
    solo = application["Organizations"][2]
    assert solo["MSPDir"] == str(layout.crypto_dir / "peerOrganizations" / "solo.ledgerhub.local" / "msp")
    assert solo["AnchorPeers"] == [{"Host": "127.0.0.1", "Port": 30060}]
    assert solo["Policies"]["Endorsement"]["Rule"] == "OR('SoloMSP.peer')"
    founding = {o["ID"]: o for o in billing["Application"]["Organizations"]}
    assert application["Organizations"][0] == founding["ProviderMSP"]  # the founding orgs as in `billing`
    policies = application["Policies"]
    assert policies["Admins"]["Rule"] == "AND('ProviderMSP.admin', 'SoloMSP.admin')"  # the auditor in none
    assert policies["LifecycleEndorsement"]["Rule"] == "AND('ProviderMSP.peer', 'SoloMSP.peer')"
    assert policies["Endorsement"]["Rule"] == "OR('ProviderMSP.peer', 'SoloMSP.peer')"
    assert policies["Readers"] == billing["Application"]["Policies"]["Readers"]
    assert "SoloMSP" in {o["ID"] for o in doc["Organizations"]}
    assert channels.endorsement_policy(["ProviderMSP", "SoloMSP"]) == "OR('ProviderMSP.peer','SoloMSP.peer')"


def test_member_policies_are_a_majority_of_the_business_parties() -> None:
    assert channels.policy_rule(["A", "B"], "admin", 2) == "AND('A.admin', 'B.admin')"
    assert channels.policy_rule(["A", "B", "C"], "peer", 2) == "OutOf(2, 'A.peer', 'B.peer', 'C.peer')"
    assert channels.policy_rule(["A", "B", "C"], "peer", 1) == "OR('A.peer', 'B.peer', 'C.peer')"
    doc = {"Profiles": {"BillingChannel": {"Application": {"Policies": {}}}}}
    with pytest.raises(ChannelRefused, match="business party"):
        channels.channel_profile(doc, [{"ID": "AuditorMSP"}], [])


def test_members_of_each_channel_from_network_json() -> None:
    info = {
        "channel": "billing",
        "orgs": {"provider": {"mspid": "ProviderMSP"}, "customer": {"mspid": "CustomerMSP"}},
        "channels": {
            "billing": {"orgs": ["ProviderMSP", "CustomerMSP"]},
            "billing-solo": {"orgs": ["ProviderMSP", "SoloMSP", "AuditorMSP"]},
        },
    }
    assert channels.members(info) == ["ProviderMSP", "CustomerMSP"]
    assert channels.members(info, "billing-solo") == ["ProviderMSP", "SoloMSP", "AuditorMSP"]
    assert channels.names(info) == ["billing", "billing-solo"]
    with pytest.raises(NetworkError, match="'other' is not a channel of this network"):
        channels.members(info, "other")
    old = {"channel": "billing", "orgs": info["orgs"]}  # a network.json from before `channels`
    assert channels.members(old) == ["ProviderMSP", "CustomerMSP"]
    assert channels.record_default(old) == {"billing": {"orgs": ["ProviderMSP", "CustomerMSP"]}}


def test_the_cli_refuses_with_exit_2_and_says_why(tmp_path: Path) -> None:
    _network(tmp_path)
    result = CliRunner().invoke(
        app, ["add-channel", "Pair", "--org", "provider", "--org", "solo", "--run-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "add-channel refused: channel name 'Pair'" in result.output
    result = CliRunner().invoke(app, ["add-channel", "pair", "--org", "provider", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and "at least two peer orgs" in result.output


def test_an_upgrade_of_an_unknown_channel_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from network.upgrade import upgrade_chaincode

    _network(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(NetworkError, match="channel 'nope' is not a channel of this network"):
        upgrade_chaincode(tmp_path, channel="nope")
    result = CliRunner().invoke(app, ["upgrade-chaincode", "--channel", "nope", "--run-dir", str(tmp_path)])
    assert result.exit_code == 1 and "is not a channel of this network" in result.output
    assert _snapshot(tmp_path) == before
