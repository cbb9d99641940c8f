"""A customer on a channel of its own (ADR 0066/0067) on a real Fabric network: `add_org(own_channel=True)`
gives org `solo` its peer and channel `billing-solo` (provider, solo, auditor) with the chaincode committed;
a contract between the provider and solo is billed there; Fabric keeps the customer of `billing` out of it
(its peer has not joined, its identity is refused); `billing` is untouched and keeps billing; add-channel
is idempotent, refuses bad input without changing anything, and an upgrade moves both channels.

Runs on the session's `consortium` network (tests/fabric/conftest.py), which test_consortium_fabric and the
hub's pair-channel test share: these tests look at what they change, not at totals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.ledger.base import Ledger, LedgerError
from hub.ledger.fabric import FabricLedger, GatewayEndpoint, load_msp_identity
from network import admin, channels, configupdate, manage, orgs, upgrade
from network.procs import NetworkError, run, wait_until
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric]

SOLO = "SoloMSP"
PAIR = "billing-solo"
MONTH = "2026-09"  # over whenever this runs: periods close on wall-clock transaction timestamps


def _info(net: FabricNetwork) -> dict[str, Any]:
    return json.loads(net.network_json.read_text())


def channel_ledger(net: FabricNetwork, channel: str) -> FabricLedger:
    """A FabricLedger on `channel` with every org's client identity and gateway from network.json."""
    info = _info(net)
    identities, gateways = {}, {}
    for org in info["orgs"].values():
        msp, peer = org["mspid"], org["peer"]
        identities[msp] = load_msp_identity(msp, Path(org["client"]["msp_dir"]))
        gateways[msp] = GatewayEndpoint(
            address=peer["endpoint"],
            tls_root_pem=Path(peer["tls_root_cert"]).read_bytes(),
            server_name=peer["host_name"],
        )
    return FabricLedger(
        channel=channel, chaincode="billing", identities=identities, gateways=gateways, default_org=PROVIDER
    )


def _arg(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def _get(ledger: Ledger, fn: str, body: dict[str, Any], org: str = PROVIDER) -> dict[str, Any]:
    return json.loads(ledger.evaluate(fn, [_arg(body)], as_org=org))


def _bill_month(ledger: Ledger, name: str, customer: str, n: int) -> dict[str, Any]:
    """Asset, contract proposed by the provider and accepted by `customer`, `n` readings, month closed:
    the invoice as the customer reads it."""
    key, device, contract_id = make_device_key(f"chan-{name}"), f"dev-{name}", f"ctr-{name}"
    ledger.submit("RegisterAsset", [_arg(sample_asset(key, device))], as_org=PROVIDER)
    contract = sample_contract(id=contract_id, assets=[device], start=f"{MONTH}-01", customer=customer)
    ledger.submit("ProposeContract", [_arg(contract)], as_org=PROVIDER)
    ledger.submit("AcceptContract", [_arg({"contract_id": contract_id})], as_org=customer)
    readings = [
        reading(f"{name}-r{i}", "scan", "1", f"{MONTH}-{1 + i % 20:02d}T10:00:00+02:00") for i in range(n)
    ]
    message = signed_message(key, readings, device_id=device, message_id=f"{name}-m1")
    answer = ledger.submit("RecordUsage", [_arg({"messages": [message]})], as_org=PROVIDER)
    assert json.loads(answer.payload)["accepted"] == n
    closed = json.loads(
        ledger.submit(
            "CloseBillingPeriod", [_arg({"contract_id": contract_id, "period": MONTH})], as_org=PROVIDER
        ).payload
    )
    invoice_id = closed.get("invoice_id") or closed["id"]

    def visible() -> bool:
        try:
            _get(ledger, "GetInvoice", {"id": invoice_id}, customer)
        except LedgerError:
            return False
        return True

    wait_until(f"invoice {invoice_id} on {customer}'s peer", visible, 60)
    return _get(ledger, "GetInvoice", {"id": invoice_id}, customer)


def _peer_channels(net: FabricNetwork, key: str) -> list[str]:
    out = run([str(net.layout.binary("peer")), "channel", "list"], net.admin_env(key), timeout=30)
    return out.split("Channels peers has joined:")[-1].split()


def _orderer_channels(net: FabricNetwork) -> list[str]:
    status, body = admin.osnadmin(net.layout, "list")
    assert status == 200
    return sorted(c["name"] for c in body["channels"] or [])


def _billing_config(net: FabricNetwork) -> bytes:
    block = configupdate.fetch_config_block(net.layout, net.org("provider"))
    return configupdate.config_of(block).SerializeToString(deterministic=True)


def test_add_channel_refuses_bad_input_and_changes_nothing(consortium: FabricNetwork) -> None:
    before = (
        consortium.network_json.read_bytes(),
        _orderer_channels(consortium),
        _billing_config(consortium),
    )
    bad: list[tuple[str, list[str], str]] = [
        ("Pair", ["provider", "customer"], "channel name"),
        ("pair_x", ["provider", "customer"], "channel name"),
        ("pair", ["provider", "nobody"], "unknown org"),
        ("pair", ["customer"], "at least two peer orgs"),
        ("billing", ["provider", "auditor"], "exists with members"),
    ]
    for name, members, message in bad:
        with pytest.raises(channels.ChannelRefused, match=message):
            channels.add_channel(consortium.run_dir, name, members)
    after = (consortium.network_json.read_bytes(), _orderer_channels(consortium), _billing_config(consortium))
    assert after == before
    assert not (consortium.layout.config_dir / "pair.block").exists()


def test_an_org_on_its_own_channel_is_billed_there_and_fabric_keeps_the_others_out(
    consortium: FabricNetwork,
) -> None:
    run_dir = consortium.run_dir
    billing_before = _billing_config(consortium)
    billing_members = channels.members(_info(consortium), "billing")

    joined = orgs.add_org(run_dir, "solo", own_channel=True)

    assert joined["mspid"] == SOLO and joined["channel"] == PAIR and joined["config_update"] is None
    assert "commit" in joined["channel_created"] and "orderer" in joined["channel_created"]
    print(f"\nadd-org --own-channel timings (cumulative s): {joined['timings_seconds']}")
    status = manage.status(run_dir)
    print(
        f"peer-solo rss {status['peer-solo']['rss_kb'] / 1024:.0f} MB, "
        f"network total {sum(e['rss_kb'] for e in status.values()) / 1024:.0f} MB"
    )
    info = _info(consortium)
    assert info["channel"] == "billing"  # the default channel, as every reader knows it
    assert channels.members(info, PAIR) == ["ProviderMSP", "AuditorMSP", SOLO]
    assert channels.members(info, "billing") == billing_members  # solo is not a member of `billing`
    assert info["channels"][PAIR]["sequence"] == 1
    assert info["orgs"]["solo"]["mspid"] == SOLO  # a hub finds its identity and peer
    # `billing` untouched: the same config (no config update), solo's peer has not joined it
    assert _billing_config(consortium) == billing_before
    assert PAIR in _orderer_channels(consortium)
    assert "billing" not in _peer_channels(consortium, "solo")
    assert sorted(_peer_channels(consortium, "solo")) == [PAIR]
    for key in ("provider", "auditor"):
        assert PAIR in _peer_channels(consortium, key)
        assert admin.committed_sequence(consortium.layout, consortium.org(key), PAIR) == 1

    # Fabric's isolation: the customer of `billing` has no copy of the pair channel and cannot ask for it
    assert PAIR not in _peer_channels(consortium, "customer")
    with pytest.raises(NetworkError):
        admin.channel_height(consortium.layout, consortium.admin_env("customer"), PAIR)

    pair = channel_ledger(consortium, PAIR)
    billing = channel_ledger(consortium, "billing")
    try:
        invoice = _bill_month(pair, "solo1", SOLO, 25)
        assert invoice["customer"] == SOLO and invoice["contract_id"] == "ctr-solo1"
        assert (
            _get(pair, "GetContract", {"id": "ctr-solo1"}, "AuditorMSP")["customer"] == SOLO
        )  # auditor reads
        readings = _get(pair, "GetReadings", {"contract_id": "ctr-solo1", "period": MONTH})["readings"]
        assert len(readings) == 25
        with pytest.raises(LedgerError) as refused:  # CustomerMSP on the pair channel: its peer refuses
            _get(pair, "GetContract", {"id": "ctr-solo1"}, CUSTOMER)
        print(f"CustomerMSP on {PAIR}: {type(refused.value).__name__}: {refused.value}")
        assert f"failed to get config for channel [{PAIR}]" in str(refused.value)  # the peer: no such ledger
        # the pair channel's contract is not on `billing` (another ledger), and `billing` keeps billing
        with pytest.raises(LedgerError):
            _get(billing, "GetContract", {"id": "ctr-solo1"}, PROVIDER)
        old = _bill_month(billing, "beside-solo", CUSTOMER, 7)
        assert old["customer"] == CUSTOMER
    finally:
        pair.close()
        billing.close()
    assert _billing_config(consortium) == billing_before


def test_add_channel_again_finishes_nothing_and_changes_nothing(consortium: FabricNetwork) -> None:
    before = consortium.network_json.read_bytes()
    heights = {
        k: admin.channel_height(consortium.layout, consortium.admin_env(k), PAIR)
        for k in ("provider", "solo")
    }
    again = channels.add_channel(consortium.run_dir, PAIR, ["provider", "solo", "auditor"])
    assert again["created"] == []
    assert consortium.network_json.read_bytes() == before
    for key, height in heights.items():
        assert admin.channel_height(consortium.layout, consortium.admin_env(key), PAIR) == height
    joined = orgs.add_org(consortium.run_dir, "solo", own_channel=True)  # add-org again: nothing either
    assert joined["channel_created"] == []
    with pytest.raises(NetworkError, match="on a channel of its own"):  # not into `billing` by a re-run
        orgs.add_org(consortium.run_dir, "solo")
    assert consortium.network_json.read_bytes() == before


def test_an_upgrade_of_one_channel_leaves_the_others_and_their_server(consortium: FabricNetwork) -> None:
    info = _info(consortium)
    provider = consortium.org("provider")
    billing_sequence = admin.committed_sequence(consortium.layout, provider, "billing")
    pair_sequence = admin.committed_sequence(consortium.layout, provider, PAIR)
    with pytest.raises(NetworkError, match="'nope' is not a channel of this network"):
        upgrade.upgrade_chaincode(consortium.run_dir, channel="nope")
    result = upgrade.upgrade_chaincode(consortium.run_dir, channel=PAIR)
    assert set(result["channels"]) == {PAIR} and result["channels"][PAIR]["sequence"] == pair_sequence + 1
    assert admin.committed_sequence(consortium.layout, consortium.org("solo"), PAIR) == pair_sequence + 1
    assert admin.committed_sequence(consortium.layout, provider, "billing") == billing_sequence  # untouched
    after = _info(consortium)
    assert after["chaincode"] == info["chaincode"]  # `billing`'s package and server stay
    assert after["channels"][PAIR]["package_id"] == result["package_id"] != info["chaincode"]["package_id"]
    alive = {name: e["alive"] for name, e in manage.status(consortium.run_dir).items()}
    old_server = upgrade.server_name(info["chaincode"]["label"])
    assert alive[old_server] and alive[upgrade.server_name(result["label"])]  # both serve a channel
    pair = channel_ledger(consortium, PAIR)
    try:
        assert _get(pair, "GetContract", {"id": "ctr-solo1"}, SOLO)["customer"] == SOLO
    finally:
        pair.close()


def test_an_upgrade_moves_every_channel_and_both_stay_readable(consortium: FabricNetwork) -> None:
    info = _info(consortium)
    sequences = {
        c: admin.committed_sequence(consortium.layout, consortium.org("provider"), c)
        for c in channels.names(info)
    }
    assert set(sequences) >= {"billing", PAIR}
    result = upgrade.upgrade_chaincode(consortium.run_dir)  # the same code in a new package
    print(
        f"\nupgrade across {sorted(result['channels'])}: timings (cumulative s) {result['timings_seconds']}"
    )
    info = _info(consortium)
    for channel, before in sequences.items():
        assert result["channels"][channel]["sequence"] == before + 1
        assert info["channels"][channel]["package_id"] == result["package_id"]
        for msp in channels.members(info, channel):
            org = next(o for o in consortium.layout.orgs if o.mspid == msp)
            assert admin.committed_sequence(consortium.layout, org, channel) == before + 1
    # each channel approved by its own members only
    assert set(result["channels"][PAIR]["approvals_at_commit"]) == {"ProviderMSP", "AuditorMSP", SOLO}
    assert SOLO not in result["channels"]["billing"]["approvals_at_commit"]
    pair = channel_ledger(consortium, PAIR)
    try:
        assert _get(pair, "GetContract", {"id": "ctr-solo1"}, SOLO)["customer"] == SOLO
        assert _bill_month(pair, "solo2", SOLO, 3)["customer"] == SOLO  # and writes under the new package
    finally:
        pair.close()
    billing = channel_ledger(consortium, "billing")
    try:
        assert _get(billing, "GetContract", {"id": "ctr-beside-solo"}, CUSTOMER)["customer"] == CUSTOMER
    finally:
        billing.close()
    names = set(manage.status(consortium.run_dir))
    assert names & {"chaincode", "chaincode-2"} == set()  # the previous servers retired: no channel runs them
    assert upgrade.server_name(result["label"]) in names
