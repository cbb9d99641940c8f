"""The network's layout and rendered configuration, checked without Fabric installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from network.layout import NETWORK_DIR, Layout, default_port_base, render, render_all

pytestmark = pytest.mark.unit


def test_ports_are_distinct_and_follow_the_base() -> None:
    a, b = Layout(Path("/tmp/a"), port_base=17050), Layout(Path("/tmp/b"), port_base=27050)
    assert len(set(a.all_ports())) == len(a.all_ports()) == 12
    assert min(a.all_ports()) == 17050
    assert set(a.all_ports()).isdisjoint(b.all_ports())
    assert a.default_chaincode_port not in a.all_ports()


def test_port_base_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERHUB_FABRIC_PORT_BASE", "23000")
    assert default_port_base() == 23000
    monkeypatch.setenv("LEDGERHUB_FABRIC_PORT_BASE", "80")
    with pytest.raises(ValueError, match="outside"):
        default_port_base()


def test_missing_template_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="CRYPTO"):
        render(NETWORK_DIR / "configtx.yaml", {"ORDERER_PORT": "1"})


@pytest.fixture
def rendered(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "run", port_base=17050)
    render_all(layout)
    return layout


def _load(path: Path) -> dict:
    text = path.read_text()
    assert "${" not in text
    return yaml.safe_load(text)


def test_configtx_policies_are_the_designed_ones(rendered: Layout) -> None:
    cfg = _load(rendered.config_dir / "configtx.yaml")
    profile = cfg["Profiles"]["BillingChannel"]
    app = profile["Application"]
    assert app["Policies"]["LifecycleEndorsement"] == {
        "Type": "Signature",
        "Rule": "AND('ProviderMSP.peer', 'CustomerMSP.peer')",
    }
    assert app["Policies"]["Endorsement"]["Rule"] == "OR('ProviderMSP.peer', 'CustomerMSP.peer')"
    assert app["Policies"]["Admins"]["Rule"] == "AND('ProviderMSP.admin', 'CustomerMSP.admin')"
    # the auditor is a member of the channel but appears in no channel-wide endorsement policy
    assert [o["ID"] for o in app["Organizations"]] == ["ProviderMSP", "CustomerMSP", "AuditorMSP"]
    for name in ("LifecycleEndorsement", "Endorsement", "Admins"):
        assert "AuditorMSP" not in app["Policies"][name]["Rule"]
    assert profile["Capabilities"] == {"V3_0": True}
    orderer = profile["Orderer"]
    assert orderer["OrdererType"] == "etcdraft"
    # block cutting for the hub's usage batches (ADR 0039): a big batch is cut at once, a lone small
    # transaction waits at most 50 ms
    assert orderer["BatchTimeout"] == "50ms"
    assert orderer["BatchSize"]["MaxMessageCount"] == 100
    assert orderer["BatchSize"]["PreferredMaxBytes"] == "512 KB"
    assert "Addresses" not in orderer  # V3_0: per-org OrdererEndpoints only
    assert orderer["Organizations"][0]["OrdererEndpoints"] == ["127.0.0.1:17050"]
    assert orderer["EtcdRaft"]["Consenters"][0]["Port"] == 17050
    for org in app["Organizations"]:
        assert org["AnchorPeers"] == [
            {"Host": "127.0.0.1", "Port": rendered.org(org["ID"][:-3].lower()).port}
        ]
        assert Path(org["MSPDir"]).is_absolute()


def test_peer_configs(rendered: Layout) -> None:
    seen_ports = set()
    for org in rendered.orgs:
        core = _load(rendered.peer_dir(org) / "core.yaml")
        peer = core["peer"]
        assert peer["localMspId"] == org.mspid
        assert peer["listenAddress"] == f"127.0.0.1:{org.port}"
        assert peer["gossip"]["externalEndpoint"] == f"127.0.0.1:{org.port}"
        assert peer["tls"]["enabled"] is True
        assert peer["gateway"]["enabled"] is True
        assert peer["limits"]["concurrency"]["gatewayService"] >= 500
        assert core["vm"]["endpoint"] == ""
        assert core["operations"]["listenAddress"] == f"127.0.0.1:{org.operations_port}"
        builder = core["chaincode"]["externalBuilders"][0]
        assert (Path(builder["path"]) / "bin" / "detect").is_file()
        assert peer["fileSystemPath"].startswith(str(rendered.run_dir))
        seen_ports.add(org.port)
    assert len(seen_ports) == 3


def test_orderer_config(rendered: Layout) -> None:
    cfg = _load(rendered.orderer_dir / "orderer.yaml")
    assert cfg["General"]["TLS"]["Enabled"] is True
    assert cfg["General"]["BootstrapMethod"] == "none"
    assert cfg["ChannelParticipation"]["Enabled"] is True
    assert cfg["Admin"]["TLS"]["ClientAuthRequired"] is True  # osnadmin needs a client certificate
    assert cfg["Admin"]["ListenAddress"] == "127.0.0.1:17051"


def test_crypto_config_has_node_ous_and_loopback_sans() -> None:
    cfg = yaml.safe_load((NETWORK_DIR / "crypto-config.yaml").read_text())
    orgs = cfg["OrdererOrgs"] + cfg["PeerOrgs"]
    assert [o["Name"] for o in cfg["PeerOrgs"]] == ["Provider", "Customer", "Auditor"]
    for org in orgs:
        assert org["EnableNodeOUs"] is True
        for spec in org["Specs"]:
            assert {"127.0.0.1", "localhost"} <= set(spec["SANS"])
