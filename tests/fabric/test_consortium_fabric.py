"""Consortium operations on a real Fabric network (issue 20, ADRs 0054 and 0055): a fourth org joins the
running channel and becomes the customer of a new contract billed end to end while the first contract keeps
billing; the chaincode is upgraded to the next sequence while a device keeps sending readings, and every
acknowledged reading is on the ledger exactly once.

Both change the network for everyone on it (one more org in the channel config and in every endorsement
plan; a new chaincode sequence and server), so this module brings up a network of its own instead of using
the session's `fabric_network`. One network serves both tests, which keeps the Fabric tier's cost at one
extra `up` (~30-60 s here).
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
from typing import Any

import pytest

from hub.config import Settings
from hub.ledger.base import ChaincodeRejected, Ledger, TransactionInvalid
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from network import admin, channels, configupdate, hsm, manage, membership, orgs, upgrade
from network.procs import NetworkError, group_rss_kb, recorded, run, wait_until
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    DeviceKey,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric]

PARTNER = "PartnerMSP"
MONTH = "2026-09"  # over whenever this runs: periods close on wall-clock transaction timestamps


def _ledger(net: FabricNetwork) -> FabricLedger:
    return open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=net.network_json))


def _arg(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def _open_contract(ledger: Ledger, name: str, customer: str, **extra: Any) -> tuple[DeviceKey, str, str]:
    key, device, contract_id = make_device_key(f"cons-{name}"), f"dev-{name}", f"ctr-{name}"
    ledger.submit("RegisterAsset", [_arg(sample_asset(key, device))], as_org=PROVIDER)
    contract = sample_contract(
        id=contract_id, assets=[device], start=f"{MONTH}-01", customer=customer, **extra
    )
    ledger.submit("ProposeContract", [_arg(contract)], as_org=PROVIDER)
    ledger.submit("AcceptContract", [_arg({"contract_id": contract_id})], as_org=customer)
    return key, device, contract_id


def _send(
    ledger: Ledger, key: DeviceKey, device: str, message_id: str, n: int, *, as_org: str = PROVIDER
) -> int:
    readings = [
        reading(f"{message_id}-r{i}", "scan", "1", f"{MONTH}-{1 + i % 20:02d}T10:00:00+02:00")
        for i in range(n)
    ]
    message = signed_message(key, readings, device_id=device, message_id=message_id)
    answer = json.loads(ledger.submit("RecordUsage", [_arg({"messages": [message]})], as_org=as_org).payload)
    return int(answer["accepted"])


def _get(ledger: Ledger, fn: str, body: dict[str, Any], org: str = PROVIDER) -> dict[str, Any]:
    return json.loads(ledger.evaluate(fn, [_arg(body)], as_org=org))


def _visible(ledger: Ledger, invoice_id: str, org: str) -> bool:
    try:
        _get(ledger, "GetInvoice", {"id": invoice_id}, org)
    except ChaincodeRejected:
        return False
    return True


def _bill(ledger: Ledger, contract_id: str, customer: str, suffix: str) -> dict[str, Any]:
    """Close the month, post to both ERPs (each side records its own posting), pay: the settled invoice."""
    closed = json.loads(
        ledger.submit(
            "CloseBillingPeriod", [_arg({"contract_id": contract_id, "period": MONTH})], as_org=PROVIDER
        ).payload
    )
    invoice_id = closed.get("invoice_id") or closed["id"]
    # Each party posts once its own peer shows the invoice (its hub learns of it from there). The client's
    # read-your-writes covers the acting org's peer only; the other party's peer, asked to co-endorse the
    # posting, can be a block behind and answer unknown_invoice (seen on the HSM network).
    for org in (PROVIDER, customer):
        wait_until(f"invoice {invoice_id} on {org}'s peer", lambda o=org: _visible(ledger, invoice_id, o), 60)
    for target, org in (("provider", PROVIDER), ("customer", customer)):
        posting = {
            "invoice_id": invoice_id,
            "target": target,
            "system": "sap-soap" if target == "provider" else "oracle-rest",
            "document_id": f"doc-{target}-{suffix}",
            "delivery_id": f"dlv-{target}-{suffix}",
        }
        ledger.submit("RecordErpPosting", [_arg(posting)], as_org=org)
    invoice = _get(ledger, "GetInvoice", {"id": invoice_id}, customer)
    payment = {"invoice_id": invoice_id, "payment_id": f"pay-{suffix}", "amount": invoice["total"]}
    ledger.submit("RecordPayment", [_arg(payment)], as_org=PROVIDER)
    return _get(ledger, "GetInvoice", {"id": invoice_id}, customer)


def _joined(net: FabricNetwork) -> str | None:
    file = net.run_dir / "orgs.json"  # other modules on the session's `consortium` may have added orgs
    return file.read_text() if file.exists() else None


def _on_billing(net: FabricNetwork) -> list[Any]:
    """The orgs on `billing` (an org on a channel of its own, test_channels_fabric, is not)."""
    return channels.member_orgs(net.layout, json.loads(net.network_json.read_text()), "billing")


def test_add_org_refuses_bad_names_and_changes_nothing(consortium: FabricNetwork) -> None:
    joined_before = _joined(consortium)
    before = configupdate.fetch_config_block(consortium.layout, consortium.org("provider")).header.number
    for bad in ("Partner", "x", "partner-2", "provider", "customer"):
        with pytest.raises(NetworkError, match=r"org name|founding org"):
            orgs.add_org(consortium.run_dir, bad)
    assert _joined(consortium) == joined_before
    assert (
        configupdate.fetch_config_block(consortium.layout, consortium.org("provider")).header.number == before
    )


def test_a_fourth_org_joins_and_is_billed_while_the_first_contract_keeps_billing(
    consortium: FabricNetwork,
) -> None:
    run_dir = consortium.run_dir
    ledger = _ledger(consortium)
    key, device, first = _open_contract(ledger, "first", CUSTOMER)
    assert _send(ledger, key, device, "first-m1", 30) == 30
    ledger.close()

    joined = orgs.add_org(run_dir, "partner")

    assert joined["mspid"] == PARTNER
    assert joined["config_update"]["signers"] == ["CustomerMSP", "ProviderMSP"]  # Application/Admins: AND
    layout = manage.make_layout(run_dir, consortium.layout.port_base)
    config = configupdate.config_of(configupdate.fetch_config_block(layout, layout.org("provider")))
    assert PARTNER in config.channel_group.groups["Application"].groups
    info = json.loads(consortium.network_json.read_text())
    assert info["orgs"]["partner"]["mspid"] == PARTNER
    partner = layout.org("partner")
    if hsm.enabled(run_dir):  # like the founding peers: its signing key on a token of its own, no key file
        entry = hsm.state(run_dir)["nodes"]["peer-partner"]
        assert entry["ski"] and entry["token_label"] == "ledgerhub-peer-partner"
        assert not list((layout.peer_msp_dir(partner) / "keystore").iterdir())
        assert info["hsm"]["nodes"]["peer-partner"]["ski"] == entry["ski"]
    print(f"\nadd-org timings (cumulative s): {joined['timings_seconds']}")
    status = manage.status(run_dir)
    print(
        f"peer-partner rss {status['peer-partner']['rss_kb'] / 1024:.0f} MB, "
        f"network total {sum(e['rss_kb'] for e in status.values()) / 1024:.0f} MB, hsm {hsm.enabled(run_dir)}"
    )
    assert admin.channel_height(layout, admin.peer_admin_env(layout, partner)) >= config_block_height(layout)

    ledger = _ledger(consortium)  # a hub opened on the new network.json knows the new org
    try:
        second, pkey_, pdevice = "ctr-second", make_device_key("cons-second"), "dev-second"
        ledger.submit("RegisterAsset", [_arg(sample_asset(pkey_, pdevice))], as_org=PROVIDER)
        contract = sample_contract(id=second, assets=[pdevice], start=f"{MONTH}-01", customer=PARTNER)
        ledger.submit("ProposeContract", [_arg(contract)], as_org=PROVIDER)
        with pytest.raises(ChaincodeRejected) as refused:  # the other customer cannot accept it
            ledger.submit("AcceptContract", [_arg({"contract_id": second})], as_org=CUSTOMER)
        assert refused.value.code == "forbidden"
        ledger.submit("AcceptContract", [_arg({"contract_id": second})], as_org=PARTNER)
        assert _send(ledger, pkey_, pdevice, "second-m1", 40) == 40
        assert _send(ledger, pkey_, pdevice, "second-m2", 10, as_org=PARTNER) == 10
        # the first contract keeps billing beside it, its parties unchanged
        assert _send(ledger, key, device, "first-m2", 12) == 12
        old = _get(ledger, "GetContract", {"id": first}, CUSTOMER)
        assert (old["customer"], old["status"]) == (CUSTOMER, "ACTIVE")

        new_invoice = _bill(ledger, second, PARTNER, "second")
        old_invoice = _bill(ledger, first, CUSTOMER, "first")
        assert new_invoice["customer"] == PARTNER and new_invoice["status"] == "SETTLED"
        assert old_invoice["customer"] == CUSTOMER and old_invoice["status"] == "SETTLED"
        usage = {c: _get(ledger, "GetReadings", {"contract_id": c, "period": MONTH}) for c in (first, second)}
        assert len(usage[first]["readings"]) == 42 and len(usage[second]["readings"]) == 50
        # the new org's own peer answers queries of its contract from its ledger copy
        assert _get(ledger, "GetContract", {"id": second}, PARTNER)["customer"] == PARTNER
    finally:
        ledger.close()

    # a second add-org of the same name finishes nothing twice: no new config block
    block = configupdate.fetch_config_block(layout, layout.org("provider")).header.number
    again = orgs.add_org(run_dir, "partner")
    assert again["config_update"] is None
    assert configupdate.fetch_config_block(layout, layout.org("provider")).header.number == block


def config_block_height(layout: Any) -> int:
    return configupdate.fetch_config_block(layout, layout.org("provider")).header.number + 1


def test_the_chaincode_upgrades_while_readings_flow(consortium: FabricNetwork) -> None:
    run_dir = consortium.run_dir
    ledger = _ledger(consortium)
    key, device, loaded = _open_contract(ledger, "loaded", CUSTOMER)
    ikey, idevice, billed = _open_contract(ledger, "billed", CUSTOMER)
    _send(ledger, ikey, idevice, "billed-m1", 20)
    old_invoice = _bill(ledger, billed, CUSTOMER, "billed")
    old_contract = _get(ledger, "GetContract", {"id": loaded})
    # A transaction endorsed under the old definition and ordered after the switch: on a contract nobody
    # else writes, so only the definition change can invalidate it.
    skey, sdevice, stale_contract = _open_contract(ledger, "stale", CUSTOMER)
    stale_readings = [reading(f"stale-r{i}", "scan", "1", f"{MONTH}-05T10:00:00+02:00") for i in range(3)]
    stale_message = signed_message(skey, stale_readings, device_id=sdevice, message_id="stale-m1")
    stale_args = [_arg({"messages": [stale_message]})]
    stale_envelope, stale_tx = ledger.endorse("RecordUsage", stale_args, as_org=PROVIDER)
    assert "payment_terms_days" not in old_contract
    sequence = consortium.query_committed("provider")["sequence"]

    acked: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    after_upgrade = threading.Event()
    sent_after = [0]
    during = [0]
    retried: list[str] = []

    class Retries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "endorsing again" in record.getMessage():
                retried.append(record.getMessage())

    handler = Retries(level=logging.INFO)
    client_log = logging.getLogger("hub.ledger.fabric.client")
    client_log.addHandler(handler)
    level = client_log.level
    client_log.setLevel(logging.INFO)

    def device_loop() -> None:
        device_ledger = _ledger(consortium)
        try:
            i = 0
            while not (stop.is_set() and sent_after[0] >= 5):
                message_id = f"loaded-m{i}"
                try:
                    accepted = _send(device_ledger, key, device, message_id, 3)
                except BaseException as exc:  # every failure is a finding
                    errors.append(exc)
                    return
                assert accepted == 3
                acked.extend(f"{message_id}-r{j}" for j in range(3))
                if after_upgrade.is_set():
                    sent_after[0] += 1
                else:
                    during[0] += 1
                i += 1
        finally:
            device_ledger.close()

    loader = threading.Thread(target=device_loop, name="device")
    loader.start()
    try:
        result = upgrade.upgrade_chaincode(
            run_dir, server_command=[sys.executable, "-m", "tests.helpers.chaincode_v2"]
        )
    finally:
        after_upgrade.set()
        stop.set()
        loader.join(timeout=600)
        client_log.removeHandler(handler)
        client_log.setLevel(level)
    assert not loader.is_alive()
    print(
        f"\nupgrade timings (cumulative s): {result['timings_seconds']}; messages acknowledged during the "
        f"upgrade {during[0]}, after {sent_after[0]}; transactions endorsed again {len(retried)}"
    )
    status = manage.status(run_dir)
    server = upgrade.server_name(result["label"])  # the package release's server (every channel's)
    print(f"{server} rss {status[server]['rss_kb'] / 1024:.0f} MB")
    assert during[0] >= 1  # readings really were flowing while the definition changed
    assert errors == [], f"readings refused during the upgrade: {errors!r}"
    assert result["sequence"] == sequence + 1
    for org in _on_billing(consortium):
        assert consortium.query_committed(org.key)["sequence"] == sequence + 1
    names = {n.name: n.is_alive() for n in recorded(consortium.layout.pids_dir)}
    assert "chaincode" not in names and names[server] is True  # the old one retired
    assert all(e["alive"] and e.get("healthy", True) for e in manage.status(run_dir).values())

    with pytest.raises(TransactionInvalid) as invalid:
        ledger.submit_prepared(stale_envelope, stale_tx, as_org=PROVIDER)
    assert invalid.value.status == "MVCC_READ_CONFLICT"  # the definition's sequence was in its read set
    ledger.close()
    ledger = _ledger(consortium)
    try:
        # endorsed again (what the client's submit does on a stale read): recorded once, under v2
        assert json.loads(ledger.submit("RecordUsage", stale_args, as_org=PROVIDER).payload)["accepted"] == 3
        stale = _get(ledger, "GetReadings", {"contract_id": stale_contract, "period": MONTH})["readings"]
        assert sorted(r["id"] for r in stale) == ["stale-r0", "stale-r1", "stale-r2"]
        readings = _get(ledger, "GetReadings", {"contract_id": loaded, "period": MONTH})["readings"]
        counts = collections.Counter(r["id"] for r in readings)
        assert sent_after[0] >= 5 and len(acked) >= 15
        assert set(counts) == set(acked) and all(c == 1 for c in counts.values())  # every ack, once
        # the data written by v1 reads under v2: the new field's default, the invoice unchanged
        contract = _get(ledger, "GetContract", {"id": loaded})
        assert contract["payment_terms_days"] == 30
        assert {k: v for k, v in contract.items() if k != "payment_terms_days"} == old_contract
        assert _get(ledger, "GetInvoice", {"id": old_invoice["id"]}, CUSTOMER) == old_invoice
        # and v2 writes it: a contract proposed now carries the field
        _, _, fresh = _open_contract(ledger, "fresh", CUSTOMER, payment_terms_days=14)
        assert _get(ledger, "GetContract", {"id": fresh})["payment_terms_days"] == 14
        invoice = _bill(ledger, loaded, CUSTOMER, "loaded")
        assert invoice["status"] == "SETTLED"
    finally:
        ledger.close()


def test_the_joined_org_uses_the_hub_api_with_its_own_identity(
    consortium: FabricNetwork, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A bearer token for the joined org acts as that org on the ledger (not as the provider, the hub's
    fallback for orgs it holds no identity for, as whom the chaincode would refuse the acceptance): it accepts
    its own contract and reads it; the founding customer's token cannot."""
    from hub.config import TokenGrant
    from tests.helpers.api import TOKENS, auth, hub_client, hub_settings

    orgs.add_org(consortium.run_dir, "partner")  # joined already when the test above ran: finishes nothing
    ledger = _ledger(consortium)
    tokens = {k: TokenGrant(**v) for k, v in TOKENS.items()}
    tokens["tok-partner"] = TokenGrant(org=PARTNER, role="customer")
    settings = hub_settings(tmp_path_factory.mktemp("partner-hub"), tokens=tokens)
    key = make_device_key("cons-api")
    contract = sample_contract(id="ctr-api", assets=["dev-api"], start=f"{MONTH}-01", customer=PARTNER)
    try:
        with hub_client(settings, ledger) as client:
            r = client.post("/v1/assets", json=sample_asset(key, "dev-api"), headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            r = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            r = client.post("/v1/contracts/ctr-api/accept", headers=auth("tok-customer"))
            # the founding customer is no party: it does not even see the contract
            assert r.status_code == 404 and r.json()["code"] == "unknown_contract", r.text
            r = client.post("/v1/contracts/ctr-api/accept", headers=auth("tok-partner"))
            assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
            r = client.get("/v1/contracts/ctr-api", headers=auth("tok-partner"))
            assert r.status_code == 200 and r.json()["customer"] == PARTNER
    finally:
        ledger.close()


# ---- membership (ADR 0063): the joined org's admin and approval count; removal ----


def _config(layout: Any) -> Any:
    return configupdate.config_of(configupdate.fetch_config_block(layout, layout.org("provider")))


def _member_rule(config: Any, name: str) -> tuple[int, list[str]]:
    from fabric_protos.common import policies_pb2

    wrapped = config.channel_group.groups["Application"].policies[name].policy
    envelope = policies_pb2.SignaturePolicyEnvelope.FromString(wrapped.value)
    return envelope.rule.n_out_of.n, membership.named(envelope)


def _set_acl(config: Any) -> None:
    """A real change under /Channel/Application (mod_policy Admins) that changes no behaviour: an ACL set to
    the policy it has by default."""
    from fabric_protos.peer import configuration_pb2

    acls = configuration_pb2.ACLs()
    acls.acls["cscc/GetConfigBlock"].policy_ref = "/Channel/Application/Readers"
    value = config.channel_group.groups["Application"].values["ACLs"]
    value.value = acls.SerializeToString()
    value.mod_policy = "Admins"


V2_SERVER = [sys.executable, "-m", "tests.helpers.chaincode_v2"]


def test_the_joined_orgs_admin_signature_and_lifecycle_approval_count(consortium: FabricNetwork) -> None:
    run_dir = consortium.run_dir
    orgs.add_org(run_dir, "partner")  # joined by the tests above; finishes nothing
    layout = manage.make_layout(run_dir, consortium.layout.port_base)
    config = _config(layout)
    members = ["ProviderMSP", "CustomerMSP", PARTNER]
    assert _member_rule(config, "Admins") == (2, members)  # a majority of the three business parties
    assert _member_rule(config, "LifecycleEndorsement") == (2, members)
    assert _member_rule(config, "Endorsement") == (1, members)
    own = config.channel_group.groups["Application"].groups[PARTNER].policies
    assert {"Admins", "Readers", "Writers", "Endorsement"} <= set(own)  # its group's own policies

    provider, partner = layout.org("provider"), layout.org("partner")
    before = configupdate.fetch_config_block(layout, provider).header.number
    with pytest.raises(NetworkError, match=r"(?i)not satisfied|did not satisfy|signature set"):
        configupdate.update_config(layout, _set_acl, signed_by=[provider])  # one admin is not a majority
    assert configupdate.fetch_config_block(layout, provider).header.number == before
    # the partner's admin signature is the second one of the majority: the orderer takes the update
    configupdate.update_config(layout, _set_acl, signed_by=[partner, provider])
    wait_until(
        "the ACL update in a config block",
        lambda: configupdate.fetch_config_block(layout, provider).header.number > before,
        120,
    )
    assert "ACLs" in _config(layout).channel_group.groups["Application"].values

    # its approval counts for the chaincode definition: provider + partner approve, the customer only
    # after the commit; the commit is endorsed by the two approving orgs' peers and is valid
    sequence = consortium.query_committed("provider")["sequence"]
    result = upgrade.upgrade_chaincode(run_dir, server_command=V2_SERVER, approvers=["provider", "partner"])
    print(f"\nupgrade (provider + partner approve) timings: {result['timings_seconds']}")
    assert result["approvals_at_commit"] == {
        "ProviderMSP": True,
        "CustomerMSP": False,
        "AuditorMSP": False,
        PARTNER: True,
    }
    assert result["commit_endorsed_by"] == [PARTNER, "ProviderMSP"]
    for org in _on_billing(consortium):
        assert consortium.query_committed(org.key)["sequence"] == sequence + 1
    ledger = _ledger(consortium)
    try:  # the customer approved right after the commit: its peer runs the new package
        _open_contract(ledger, "after-partner-upgrade", CUSTOMER)
        assert (
            _get(ledger, "GetContract", {"id": "ctr-after-partner-upgrade"}, CUSTOMER)["status"] == "ACTIVE"
        )
    finally:
        ledger.close()


def test_both_party_transactions_during_an_upgrade_commit_once(consortium: FabricNetwork) -> None:
    """AcceptContract needs the provider's and the customer's peer (the contract key's AND policy). Sent while
    the definition switches, the two peers can be at different sequences for a moment and return different
    read sets ("ProposalResponsePayloads do not match"); the client levels the peers and endorses again."""
    run_dir = consortium.run_dir
    accepted: dict[str, str] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    during = [0]
    disagreed: list[str] = []

    class Disagreements(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "endorsing again" in record.getMessage():
                disagreed.append(record.getMessage())

    handler = Disagreements(level=logging.INFO)
    client_log = logging.getLogger("hub.ledger.fabric.client")
    client_log.addHandler(handler)
    level = client_log.level
    client_log.setLevel(logging.INFO)

    def both_parties() -> None:
        ledger = _ledger(consortium)
        try:
            i = 0
            while not stop.is_set() or i < 3:
                name = f"bp{i}"
                key, device, contract_id = make_device_key(f"cons-{name}"), f"dev-{name}", f"ctr-{name}"
                try:
                    ledger.submit("RegisterAsset", [_arg(sample_asset(key, device))], as_org=PROVIDER)
                    contract = sample_contract(
                        id=contract_id, assets=[device], start=f"{MONTH}-01", customer=CUSTOMER
                    )
                    ledger.submit("ProposeContract", [_arg(contract)], as_org=PROVIDER)
                    commit = ledger.submit(
                        "AcceptContract", [_arg({"contract_id": contract_id})], as_org=CUSTOMER
                    )
                except BaseException as exc:  # every failure is a finding
                    errors.append(exc)
                    return
                accepted[contract_id] = commit.tx_id
                if not stop.is_set():
                    during[0] += 1
                i += 1
        finally:
            ledger.close()

    worker = threading.Thread(target=both_parties, name="both-parties")
    worker.start()
    try:
        result = upgrade.upgrade_chaincode(run_dir, server_command=V2_SERVER)
    finally:
        stop.set()
        worker.join(timeout=600)
        client_log.removeHandler(handler)
        client_log.setLevel(level)
    assert not worker.is_alive()
    print(
        f"\nupgrade timings: {result['timings_seconds']}; contracts accepted during it {during[0]}, in all "
        f"{len(accepted)}; endorsed again: after the endorsers disagreed "
        f"{sum('disagreed' in m for m in disagreed)}, after an invalidation "
        f"{sum('invalidated' in m for m in disagreed)}"
    )
    assert errors == [], f"both-party transactions failed during the upgrade: {errors!r}"
    assert during[0] >= 1
    ledger = _ledger(consortium)
    try:
        for contract_id, tx_id in accepted.items():
            record = _get(ledger, "GetContract", {"id": contract_id}, CUSTOMER)
            # committed once: active, and by the very transaction the client acknowledged
            assert record["status"] == "ACTIVE" and record["accepted_tx"] == tx_id, contract_id
    finally:
        ledger.close()


def test_a_removed_org_is_refused_by_the_peers_and_the_others_keep_billing(consortium: FabricNetwork) -> None:
    from network import removal

    run_dir = consortium.run_dir
    orgs.add_org(run_dir, "partner")
    layout = manage.make_layout(run_dir, consortium.layout.port_base)
    provider, partner = layout.org("provider"), layout.org("partner")
    block = configupdate.fetch_config_block(layout, provider).header.number
    for name, code in (("provider", "founding_org"), ("auditor", "founding_org"), ("nobody", "unknown_org")):
        with pytest.raises(removal.MembershipRefused) as refused:
            removal.remove_org(run_dir, name)
        assert refused.value.code == code
    with pytest.raises(removal.MembershipRefused) as refused:  # ctr-second and ctr-api are open
        removal.remove_org(run_dir, "partner")
    assert refused.value.code == "open_contracts"
    assert {"ctr-second", "ctr-api"} <= set(refused.value.extra["contracts"])
    assert configupdate.fetch_config_block(layout, provider).header.number == block  # nothing changed
    assert {n.name: n.is_alive() for n in recorded(layout.pids_dir)}["peer-partner"] is True

    # the partner's identity, as its admin CLI would use it, pointed at the provider's peer
    as_partner = admin.peer_admin_env(layout, partner)
    as_partner.update(
        CORE_PEER_ADDRESS=provider.endpoint, CORE_PEER_TLS_ROOTCERT_FILE=str(layout.peer_tls_ca(provider))
    )
    query = [
        str(layout.binary("peer")), "chaincode", "query", "-C", "billing", "-n", "billing",
        "-c", json.dumps({"Args": ["GetContract", _arg({"id": "ctr-second"})]}),
    ]  # fmt: skip
    assert PARTNER in run(query, as_partner, timeout=60)  # a member: answered

    peak = group_rss_kb(next(n for n in recorded(layout.pids_dir) if n.name == "peer-partner").pid)
    result = removal.remove_org(run_dir, "partner", force=True)
    print(
        f"\nremove-org timings (cumulative s): {result['timings_seconds']}; "
        f"peer-partner rss before {peak / 1024:.0f} MB"
    )
    assert result["config_update"]["signers"] == ["CustomerMSP", "ProviderMSP"]  # not the leaving org
    assert {"ctr-second", "ctr-api"} <= set(result["open_contracts"]) and result["peer_stopped"]
    config = _config(layout)
    assert PARTNER not in config.channel_group.groups["Application"].groups
    founders = ["ProviderMSP", "CustomerMSP"]
    assert _member_rule(config, "Admins") == (2, founders)  # back to AND(provider, customer)
    assert _member_rule(config, "LifecycleEndorsement") == (2, founders)
    assert "peer-partner" not in {n.name for n in recorded(layout.pids_dir)}
    info = json.loads(consortium.network_json.read_text())
    assert "partner" not in info["orgs"] and info["removed_orgs"][-1]["mspid"] == PARTNER

    # the peers refuse the removed org's identity: it can neither read nor submit
    with pytest.raises(
        NetworkError, match=r"access denied: channel \[billing\] creator org unknown"
    ) as read_refused:
        run(query, as_partner, timeout=60)
    print(f"query as the removed org: {str(read_refused.value).splitlines()[-1][:300]}")
    invoke = [
        str(layout.binary("peer")), "chaincode", "invoke", *admin.orderer_tls_args(layout),
        "-C", "billing", "-n", "billing", "--peerAddresses", provider.endpoint,
        "--tlsRootCertFiles", str(layout.peer_tls_ca(provider)), "--waitForEvent",
        "-c", json.dumps({"Args": ["AcceptContract", _arg({"contract_id": "ctr-second"})]}),
    ]  # fmt: skip
    with pytest.raises(
        NetworkError, match=r"access denied: channel \[billing\] creator org unknown"
    ) as submit_refused:
        run(invoke, as_partner, timeout=60)
    print(f"invoke as the removed org: {str(submit_refused.value).splitlines()[-1][:300]}")

    ledger = _ledger(consortium)  # a hub opened on the new network.json: the others keep billing
    try:
        with pytest.raises(Exception):  # no identity for the removed org any more
            ledger.evaluate("GetContract", [_arg({"id": "ctr-second"})], as_org=PARTNER)
        key, device, contract_id = _open_contract(ledger, "after-removal", CUSTOMER)
        assert _send(ledger, key, device, "after-removal-m1", 10) == 10
        assert (
            len(_get(ledger, "GetReadings", {"contract_id": contract_id, "period": MONTH})["readings"]) == 10
        )
        kept = _get(ledger, "GetContract", {"id": "ctr-second"})  # its history stays on the ledger
        assert (kept["customer"], kept["status"]) == (PARTNER, "ACTIVE")
    finally:
        ledger.close()

    # done is done: a second run changes nothing, and the name is not reused
    again = removal.remove_org(run_dir, "partner", force=True)
    assert again["config_update"] is None and not again["peer_stopped"]
    with pytest.raises(NetworkError, match="was removed"):
        orgs.add_org(run_dir, "partner")
