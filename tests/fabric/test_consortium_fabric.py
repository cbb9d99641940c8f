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
from collections.abc import Iterator
from typing import Any

import pytest

from hub.config import Settings
from hub.ledger.base import ChaincodeRejected, Ledger, TransactionInvalid
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from network import admin, configupdate, hsm, manage, orgs, upgrade
from network.procs import NetworkError, free_port_base, recorded, wait_until
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
from tests.helpers.fabric_network import FabricNetwork, leftovers, skip_or_fail

pytestmark = [pytest.mark.fabric]

PARTNER = "PartnerMSP"
MONTH = "2026-09"  # over whenever this runs: periods close on wall-clock transaction timestamps


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricNetwork]:
    reason = admin.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    # node keys on SoftHSM2 tokens where the pkcs11 binaries are built (make fabric-bin builds them): the
    # joined org's peer must then get its key on a token too
    hsm_keys = not (admin.unavailable_reason(hsm.pkcs11_bin_dir()) or hsm.unavailable_reason())
    run_dir = tmp_path_factory.mktemp("fabric-consortium")
    port_base = free_port_base()
    info = manage.up(run_dir=run_dir, port_base=port_base, start_chaincode=True, hsm_keys=hsm_keys)
    layout = manage.make_layout(run_dir, port_base)
    first = recorded(layout.pids_dir)
    try:
        yield FabricNetwork(info=info, layout=layout, nodes=first)
    finally:
        nodes = [*first, *recorded(layout.pids_dir)]  # + the joined peer and the new chaincode server
        manage.down(run_dir)
        assert not leftovers(nodes), "processes left after network down"


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


def test_add_org_refuses_bad_names_and_changes_nothing(consortium: FabricNetwork) -> None:
    before = configupdate.fetch_config_block(consortium.layout, consortium.org("provider")).header.number
    for bad in ("Partner", "x", "partner-2", "provider", "customer"):
        with pytest.raises(NetworkError, match=r"org name|founding org"):
            orgs.add_org(consortium.run_dir, bad)
    assert not (consortium.run_dir / "orgs.json").exists()
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
    print(f"chaincode-{sequence + 1} rss {status[f'chaincode-{sequence + 1}']['rss_kb'] / 1024:.0f} MB")
    assert during[0] >= 1  # readings really were flowing while the definition changed
    assert errors == [], f"readings refused during the upgrade: {errors!r}"
    assert result["sequence"] == sequence + 1
    for org in consortium.layout.orgs:
        assert consortium.query_committed(org.key)["sequence"] == sequence + 1
    names = {n.name: n.is_alive() for n in recorded(consortium.layout.pids_dir)}
    assert "chaincode" not in names and names[f"chaincode-{sequence + 1}"] is True  # the old one retired
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
