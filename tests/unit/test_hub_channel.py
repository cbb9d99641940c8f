"""A hub serves one (org, channel) (ADR 0068): which channel it opens, which orgs it opens there, what it
refuses (a channel the network does not have, an org that is not a member, a channel with the embedded
ledger), on a network.json written here (no Fabric: nothing is dialled until a call)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.config import Settings, load_settings
from hub.ledger import open_ledger
from hub.ledger.channel import ChannelRefused, choose_channel
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from tests.unit.test_gateway_open import _msp_dir, _network

pytestmark = pytest.mark.unit

PAIR = "billing-solo"
CHANNELS = {
    "billing": {"orgs": ["ProviderMSP", "CustomerMSP", "AuditorMSP"]},
    PAIR: {"orgs": ["ProviderMSP", "AuditorMSP", "SoloMSP"]},
}


def _with_channels(tmp: Path) -> Path:
    """The unit network (provider, customer) plus auditor and solo, and a `channels` map: billing (provider,
    customer, auditor) and billing-solo (provider, auditor, solo)."""
    tmp.mkdir(parents=True, exist_ok=True)
    folder = _network(tmp)
    info = json.loads((folder / "network.json").read_text())
    for key, msp_id, port in (("auditor", "AuditorMSP", 9051), ("solo", "SoloMSP", 10051)):
        peer = dict(info["orgs"]["provider"]["peer"], endpoint=f"127.0.0.1:{port}", host_name=f"peer0.{key}")
        info["orgs"][key] = {"mspid": msp_id, "peer": peer, "client": {"msp_dir": str(_msp_dir(tmp, msp_id))}}
    info["channels"] = CHANNELS
    (folder / "network.json").write_text(json.dumps(info))
    return folder


def _open(tmp: Path, **settings: Any) -> FabricLedger:
    folder = _with_channels(tmp)
    return open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=folder, **settings), {})


def test_the_default_is_network_json_channel_and_an_explicit_channel_wins() -> None:
    info = {"channel": "billing", "orgs": {}, "channels": CHANNELS}
    assert choose_channel(info, None, None).channel == "billing"
    assert choose_channel(info, PAIR, None).channel == PAIR
    assert choose_channel(info, PAIR, "SoloMSP").members == ("ProviderMSP", "AuditorMSP", "SoloMSP")
    assert choose_channel(None, None, None).channel == "billing"  # a single gateway address
    assert choose_channel(None, "other", None).channel == "other"
    # a network.json from before channels were recorded: one channel, every org on it
    old = {"channel": "billing", "orgs": {"p": {"mspid": "ProviderMSP"}, "c": {"mspid": "CustomerMSP"}}}
    assert choose_channel(old, None, "CustomerMSP").members == ("ProviderMSP", "CustomerMSP")


def test_an_explicit_channel_overrides_network_json(tmp_path: Path) -> None:
    """Before ADR 0068 network.json's `channel` overrode the setting; now the setting wins."""
    folder = _network(tmp_path)
    info = json.loads((folder / "network.json").read_text())
    info["channels"] = {"billing": {"orgs": ["ProviderMSP", "CustomerMSP"]},
                        "billing-two": {"orgs": ["ProviderMSP", "CustomerMSP"]}}
    (folder / "network.json").write_text(json.dumps(info))
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=folder,
                                         fabric_channel="billing-two"), {})
    try:
        assert ledger.network_id == "billing-two"
    finally:
        ledger.close()


def test_a_hub_on_a_pair_channel_opens_that_channels_members_only(tmp_path: Path) -> None:
    ledger = _open(tmp_path, fabric_channel=PAIR)  # the all-orgs hub on the pair channel
    try:
        assert ledger.network_id == PAIR
        assert sorted(ledger._endpoints) == ["AuditorMSP", "ProviderMSP", "SoloMSP"]
    finally:
        ledger.close()
    ledger = _open(tmp_path / "default")  # the default channel: billing's members, not solo
    try:
        assert ledger.network_id == "billing"
        assert sorted(ledger._endpoints) == ["AuditorMSP", "CustomerMSP", "ProviderMSP"]
    finally:
        ledger.close()
    ledger = _open(tmp_path / "solo", fabric_channel=PAIR, org="SoloMSP")
    try:
        assert list(ledger._endpoints) == ["SoloMSP"] and ledger.identity("SoloMSP").msp_id == "SoloMSP"
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("org", "channel", "message"),
    [
        ("CustomerMSP", PAIR, "org CustomerMSP is not a member of channel 'billing-solo' "
                              "(members: ProviderMSP, AuditorMSP, SoloMSP)"),
        ("SoloMSP", None, "org SoloMSP is not a member of channel 'billing' "
                          "(members: ProviderMSP, CustomerMSP, AuditorMSP)"),
        ("ProviderMSP", "billing-nobody", "channel 'billing-nobody' is not a channel of this network "
                                          "(channels: billing, billing-solo)"),
        (None, "billing-nobody", "is not a channel of this network"),
        (None, " ", "fabric_channel is blank"),
    ],
)
def test_a_hub_refuses_a_channel_it_cannot_serve(
    tmp_path: Path, org: str | None, channel: str | None, message: str
) -> None:
    with pytest.raises(ChannelRefused) as refused:
        _open(tmp_path, org=org, fabric_channel=channel)
    assert message in str(refused.value)


def test_without_a_channels_map_only_the_default_channel_exists(tmp_path: Path) -> None:
    with pytest.raises(ChannelRefused, match="'billing-x' is not a channel of this network"):
        open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=_network(tmp_path),
                                    fabric_channel="billing-x"), {})


def test_the_embedded_ledger_refuses_a_channel(tmp_path: Path) -> None:
    settings = Settings(ledger="embedded", data_dir=tmp_path, fabric_channel=PAIR)
    with pytest.raises(ChannelRefused, match="needs ledger=fabric: the embedded ledger has one channel"):
        open_ledger(settings, {})
    assert not any(tmp_path.iterdir())  # refused before the ledger created anything


def test_the_channel_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGERHUB_CONFIG", raising=False)
    monkeypatch.setenv("LEDGERHUB_FABRIC_CHANNEL", PAIR)
    assert load_settings().fabric_channel == PAIR
    monkeypatch.delenv("LEDGERHUB_FABRIC_CHANNEL")
    assert load_settings().fabric_channel is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--org", "CustomerMSP", "--channel", PAIR], "org CustomerMSP is not a member of channel"),
        (["--channel", "billing-nobody"], "'billing-nobody' is not a channel of this network"),
    ],
)
def test_serve_refuses_to_start_naming_the_channel_and_its_members(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    folder = _with_channels(tmp_path)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"ledger": "fabric", "fabric_network_dir": str(folder),
                                  "data_dir": str(tmp_path / "data")}))
    env = {"LEDGERHUB_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "serve", "--port", "1", *extra], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing created


def test_serve_refuses_a_channel_with_the_embedded_ledger(tmp_path: Path) -> None:
    env = {"LEDGERHUB_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "hub.cli", "serve", "--port", "1", "--channel", PAIR],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs ledger=fabric" in done.stderr


def test_the_hub_of_an_org_that_joined_later_gets_its_own_keys(tmp_path: Path) -> None:
    """The key area made CA and client keys for the founding orgs only; the hub of `SoloMSP` (a customer on
    its own channel) failed at start with `no key named 'ca-SoloMSP'`."""
    from hub.keys import build_key_manager, build_signers

    settings = Settings(ledger="fabric", fabric_network_dir=_with_channels(tmp_path / "net"),
                        fabric_channel=PAIR, org="SoloMSP", data_dir=tmp_path / "data")
    build_signers(settings)
    names = set(build_key_manager(settings).names())
    assert {"ca-SoloMSP", "client-SoloMSP"} <= names
