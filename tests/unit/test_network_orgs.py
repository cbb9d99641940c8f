"""Joined orgs in the dev network's layout, and the add-org / upgrade-chaincode commands' refusals, without
Fabric (the real-network tests: tests/fabric/test_consortium_fabric.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from network.cli import app
from network.layout import Layout
from network.orgs import add_org
from network.procs import NetworkError


def test_joined_orgs_follow_the_founding_ones_on_their_own_ports(tmp_path: Path) -> None:
    layout = Layout(run_dir=tmp_path, port_base=30000)
    assert [o.key for o in layout.orgs] == ["provider", "customer", "auditor"]
    (tmp_path / "orgs.json").write_text(
        json.dumps(
            [{"key": "partner", "mspid": "PartnerMSP", "domain": "partner.ledgerhub.local", "slot": 0}]
        )
    )
    partner = layout.org("partner")
    assert [o.key for o in layout.orgs][-1] == "partner"
    assert (partner.port, partner.chaincode_port, partner.operations_port) == (30060, 30061, 30062)
    assert partner.endorses and partner.mspid == "PartnerMSP"
    assert layout.peer_dir(partner) == tmp_path / "peers" / "partner"
    assert len(set(layout.all_ports())) == len(layout.all_ports())  # no port shared with a founding node


def test_a_removed_org_leaves_the_layout_and_keeps_its_slot(tmp_path: Path) -> None:
    entries = [
        {
            "key": "partner",
            "mspid": "PartnerMSP",
            "domain": "partner.ledgerhub.local",
            "slot": 0,
            "removed": True,
        },
        {"key": "beta", "mspid": "BetaMSP", "domain": "beta.ledgerhub.local", "slot": 1},
    ]
    (tmp_path / "orgs.json").write_text(json.dumps(entries))
    layout = Layout(run_dir=tmp_path, port_base=30000)
    assert [o.key for o in layout.orgs] == ["provider", "customer", "auditor", "beta"]
    assert layout.org("beta").port == 30070  # slot 1: the removed org's ports are not handed on
    with pytest.raises(KeyError):
        layout.org("partner")


@pytest.mark.parametrize("name", ["Partner", "p", "partner-2", "2partner", "a" * 21])
def test_add_org_refuses_a_bad_name_before_touching_anything(tmp_path: Path, name: str) -> None:
    with pytest.raises(NetworkError, match="org name"):
        add_org(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_the_commands_refuse_a_dir_without_a_network(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["add-org", "partner"], ["upgrade-chaincode"], ["remove-org", "partner"]):
        result = runner.invoke(app, [*args, "--run-dir", str(tmp_path)])
        assert result.exit_code == 1
        assert "no network.json" in result.output
    assert list(tmp_path.iterdir()) == []
