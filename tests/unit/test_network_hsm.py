"""network/hsm.py without Fabric: the BCCSP section it writes into the rendered node configs, and the
environment it adds to a node (nothing for a network without --hsm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from network import hsm
from network.layout import Layout, render_all
from network.procs import NetworkError


def _block(indent: str) -> str:
    return hsm.bccsp_block(indent, "/usr/lib/softhsm/libsofthsm2.so", "ledgerhub-orderer", "0123abcd")


def test_the_rendered_configs_get_the_pkcs11_bccsp_and_keep_everything_else(tmp_path: Path) -> None:
    layout = Layout(run_dir=tmp_path / "run", port_base=31050)
    render_all(layout)
    for path, section in (
        (layout.orderer_dir / "orderer.yaml", "General"),
        (layout.peer_dir(layout.org("provider")) / "core.yaml", "peer"),
    ):
        before = yaml.safe_load(path.read_text())
        after = yaml.safe_load(hsm.replace_bccsp(path.read_text(), _block))
        bccsp = after[section]["BCCSP"]
        assert bccsp["Default"] == "PKCS11"
        assert bccsp["PKCS11"] == {
            "Library": "/usr/lib/softhsm/libsofthsm2.so",
            "Label": "ledgerhub-orderer",
            "Pin": "0123abcd",
            "Hash": "SHA2",
            "Security": 256,
        }
        del before[section]["BCCSP"], after[section]["BCCSP"]
        assert after == before  # nothing else in the file changed


def test_a_config_without_exactly_one_bccsp_section_is_refused() -> None:
    with pytest.raises(NetworkError, match="expected one BCCSP section"):
        hsm.replace_bccsp("peer:\n  id: x\n", _block)
    twice = "a:\n  BCCSP:\n    Default: SW\nb:\n  BCCSP:\n    Default: SW\n"
    with pytest.raises(NetworkError, match="found 2"):
        hsm.replace_bccsp(twice, _block)


def test_node_env_is_empty_without_hsm_and_points_at_the_nodes_token_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGERHUB_FABRIC_LOG_SPEC", raising=False)
    assert not hsm.enabled(tmp_path)
    assert hsm.node_env(tmp_path, "orderer") == {}
    (tmp_path / "hsm").mkdir()
    conf = tmp_path / "hsm" / "peer-customer" / "softhsm2.conf"
    state = {
        "module": "m",
        "nodes": {
            "peer-customer": {
                "token_label": "ledgerhub-peer-customer",
                "softhsm2_conf": str(conf),
                "ski": "ab",
            }
        },
    }
    (tmp_path / "hsm" / "state.json").write_text(json.dumps(state))
    env = hsm.node_env(tmp_path, "peer-customer")
    node_cfg = tmp_path / "peers" / "customer" / "node"
    assert env == {
        "SOFTHSM2_CONF": str(conf),
        "FABRIC_CFG_PATH": str(node_cfg),
        "FABRIC_LOGGING_SPEC": "info:nodeCmd=warning",
    }
    assert hsm.node_env(tmp_path, "orderer") == {}  # not an HSM node in this state
    assert hsm.describe(tmp_path)["nodes"]["peer-customer"]["token_label"] == "ledgerhub-peer-customer"


def test_unavailable_names_the_missing_binaries_and_the_install_command(tmp_path: Path) -> None:
    reason = hsm.unavailable_reason(tmp_path / "bin")
    assert reason is not None and "network/install.sh --pkcs11" in reason
