"""Retiring a rotated node key on a real HSM network (ADR 0056): after `rotate-node-key peer-customer` and
`retire-node-key peer-customer`, the customer org's channel MSP carries a CRL (signed by the org CA) for the
old certificate, and an endorsement signed with the old key on the peer's token is refused at commit
(ENDORSEMENT_POLICY_FAILURE), while the same forgery was VALID before the CRL (so the forgery is right and
the CRL is what refuses it) and the peer's new key endorses as before.

Always on a network of its own (`--hsm`), never the session's: a config update there would move the
config block that other modules' proofs anchor to (block 0).

A proof of an invoice whose usage spans the retirement's config block verifies offline and carries that
config block (ADR 0057); changes to the new parts fail.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2
from fabric_protos.peer import proposal_response_pb2, transaction_pb2

from hub.config import Settings
from hub.ledger.base import TransactionInvalid
from network import configupdate, hsm, hsm_retire, hsm_rotate
from network.procs import NetworkError
from tests.fabric.test_hsm_network import _node_cert, _same_key, _submit_settled
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.hsm_sign import sign_on_token

pytestmark = [pytest.mark.fabric, pytest.mark.hsm]


@pytest.fixture(scope="module")
def hsm_network_may_share() -> bool:
    """Retiring keys changes the network: never the session's (tests/fabric/conftest.py's `hsm_network`)."""
    return False


def _with_endorsement_by(
    envelope: common_pb2.Envelope, mspid: str, cert_pem: bytes, sign: Any
) -> common_pb2.Envelope:
    """The prepared transaction with `mspid`'s endorsement replaced by one under `cert_pem`, signed by
    `sign(sha256 digest)` over proposal-response payload ‖ endorser, as a peer signs it."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    endorser = identities_pb2.SerializedIdentity(mspid=mspid, id_bytes=cert_pem).SerializeToString()
    signature = sign(hashlib.sha256(action.action.proposal_response_payload + endorser).digest())
    replaced = 0
    for e in action.action.endorsements:
        if identities_pb2.SerializedIdentity.FromString(e.endorser).mspid == mspid:
            e.CopyFrom(proposal_response_pb2.Endorsement(endorser=endorser, signature=signature))
            replaced += 1
    assert replaced == 1, f"expected one {mspid} endorsement, found {replaced}"
    tx.actions[0].payload = action.SerializeToString()
    payload.data = tx.SerializeToString()
    return common_pb2.Envelope(payload=payload.SerializeToString())


def _propose(ledger: Any, tag: str) -> str:
    device, contract_id = f"dev-{tag}", f"ctr-{tag}"
    assert _submit_settled(
        ledger, "RegisterAsset", [json.dumps(sample_asset(make_device_key(tag), device))], PROVIDER
    ).valid
    contract = sample_contract(id=contract_id, assets=[device], start="2026-01-01")
    assert _submit_settled(ledger, "ProposeContract", [json.dumps(contract)], PROVIDER).valid
    return contract_id


def _accept_forged(ledger: Any, contract_id: str, cert_pem: bytes, sign: Any) -> Any:
    """AcceptContract endorsed by both orgs' peers, the customer's endorsement then re-signed with `sign`."""
    args = [json.dumps({"contract_id": contract_id})]
    envelope, tx_id = ledger.endorse(
        "AcceptContract", args, as_org=CUSTOMER, endorsing_orgs=[PROVIDER, CUSTOMER]
    )
    forged = _with_endorsement_by(envelope, CUSTOMER, cert_pem, sign)
    return ledger.submit_prepared(forged, tx_id, as_org=CUSTOMER)


def _revocation_lists(net: FabricNetwork, mspid: str) -> list[x509.CertificateRevocationList]:
    config = configupdate.config_of(configupdate.fetch_config_block(net.layout, "customer"))
    group = configupdate.org_group(config, mspid)
    msp = msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value)
    fabric = msp_config_pb2.FabricMSPConfig.FromString(msp.config)
    return [x509.load_pem_x509_crl(bytes(p)) for p in fabric.revocation_list]


def test_a_retired_node_key_is_refused_by_the_network_and_the_new_key_endorses(
    hsm_network: FabricNetwork,
) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    net = hsm_network
    before = _node_cert(net, "peer-customer")
    rotated = hsm_rotate.rotate(net.run_dir, "peer-customer")
    old_ski = rotated["previous_ski"]
    old_pem = hsm_retire.previous_cert(net.run_dir, "peer-customer", old_ski).read_bytes()
    old = x509.load_pem_x509_certificate(old_pem)
    assert old == before  # rotate() kept the certificate it replaced
    new = _node_cert(net, "peer-customer")
    assert new.serial_number != old.serial_number
    entry = hsm.state(net.run_dir)["nodes"]["peer-customer"]
    pin = (net.run_dir / "hsm" / "peer-customer" / "pin").read_text().strip()

    def sign_with_old_key(digest: bytes) -> bytes:
        conf = Path(entry["softhsm2_conf"])
        return sign_on_token(conf, hsm.module_path(), entry["token_label"], pin, old_ski, digest)

    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=net.network_json))
    tag = uuid.uuid4().hex[:8]
    try:
        # control: before the CRL, an endorsement under the old key is still accepted (it chains to the CA)
        control = _propose(ledger, f"{tag}a")
        assert _accept_forged(ledger, control, old_pem, sign_with_old_key).valid
        # retire: a CRL for the old certificate in CustomerMSP through a channel config update
        result = hsm_retire.retire(net.run_dir, "peer-customer")
        assert result["retired_skis"] == [old_ski] and result["mspid"] == CUSTOMER
        crls = _revocation_lists(net, CUSTOMER)
        ca = x509.load_pem_x509_certificate(
            next((net.layout.peer_msp_dir(net.org("customer")) / "cacerts").glob("*.pem")).read_bytes()
        )
        assert len(crls) == 1 and crls[0].is_signature_valid(ca.public_key())  # type: ignore[arg-type]
        assert crls[0].get_revoked_certificate_by_serial_number(old.serial_number) is not None
        assert crls[0].get_revoked_certificate_by_serial_number(new.serial_number) is None
        assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
        # the old key is refused: the same forgery on a fresh contract is invalidated at commit
        refused = _propose(ledger, f"{tag}b")
        with pytest.raises(TransactionInvalid) as caught:
            _accept_forged(ledger, refused, old_pem, sign_with_old_key)
        assert caught.value.status == "ENDORSEMENT_POLICY_FAILURE"
        state = json.loads(ledger.evaluate("GetContract", [json.dumps({"id": refused})], as_org=CUSTOMER))
        assert state["status"] == "PROPOSED", "the refused acceptance changed the contract"
        # the new key works: the honest acceptance of that contract commits, endorsed under the new cert
        accepted = _submit_settled(ledger, "AcceptContract", [json.dumps({"contract_id": refused})], CUSTOMER)
        assert accepted.valid
        customer = [e for e in ledger.tx(accepted.tx_id).endorsements if e.msp_id == CUSTOMER]
        assert customer and _same_key(customer[0].certificate, new)
    finally:
        ledger.close()
    # nothing left to retire: a clear refusal, no config update
    with pytest.raises(NetworkError, match="no rotated-out key to retire"):
        hsm_retire.retire(net.run_dir, "peer-customer")
    with pytest.raises(NetworkError, match="unknown node"):
        hsm_retire.retire(net.run_dir, "peer-nobody")
    assert len(_revocation_lists(net, CUSTOMER)) == 1


# --- a proof whose blocks span the retirement's config update (ADR 0057) ----------------------------------


def _config_regions(bundle: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    for block in bundle["ledger"]["config_updates"]:
        n = block["number"]
        yield f"config block {n} envelope", block["data"], 0
        yield f"config block {n} orderer metadata", block, "orderer_metadata"
        for j, sig in enumerate(block["orderer_signatures"]):
            yield f"config block {n} signature {j} header", sig, "header"
            yield f"config block {n} signature {j}", sig, "signature"


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def test_a_proof_spanning_the_retirement_verifies_offline_and_its_config_chain_is_checked(
    hsm_network: FabricNetwork,
) -> None:
    import random

    from hub.audit.fabric_config import _apply
    from hub.audit.fabric_msp import ChannelTrust
    from hub.audit.proof import build_bundle
    from hub.audit.verify import verify_bundle
    from hub.ledger.fabric import open_fabric_ledger
    from tests.helpers.api import last_month, ts
    from tests.helpers.chaincode import reading
    from tests.helpers.chaincode import signed_message as sign
    from tests.helpers.fabric_proof import b64, fresh, unb64

    net = hsm_network
    hsm_rotate.rotate(net.run_dir, "peer-provider")  # restarts the provider's peer on a new token key
    period, start = last_month()
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=net.network_json))
    s = uuid.uuid4().hex[:8]
    key, device, cid = make_device_key(f"span-{s}"), f"dev-span-{s}", f"ctr-span-{s}"

    def usage(n: int, org: str) -> None:
        rs = [reading(f"{s}-r{n}-{i}", "scan", "1", ts(period, 1 + n, 9, i)) for i in range(3)]
        body = {"messages": [sign(key, rs, device_id=device, message_id=f"{s}-m{n}")]}
        assert _submit_settled(ledger, "RecordUsage", [json.dumps(body)], org).valid

    try:
        asset = [json.dumps(sample_asset(key, device))]
        assert _submit_settled(ledger, "RegisterAsset", asset, PROVIDER).valid
        contract = [json.dumps(sample_contract(id=cid, assets=[device], start=start))]
        assert _submit_settled(ledger, "ProposeContract", contract, PROVIDER).valid
        assert _submit_settled(ledger, "AcceptContract", [json.dumps({"contract_id": cid})], CUSTOMER).valid
        usage(1, PROVIDER)
        hsm_retire.retire(net.run_dir, "peer-provider")  # a config block between the usage batches
        config_number = configupdate.fetch_config_block(net.layout, "provider").header.number
        usage(2, CUSTOMER)
        usage(3, PROVIDER)
        close = [json.dumps({"contract_id": cid, "period": period})]
        assert _submit_settled(ledger, "CloseBillingPeriod", close, PROVIDER).valid
        bundle = build_bundle(ledger, f"inv-{cid}-{period}", as_org="AuditorMSP")
        anchor = bytes(ledger.block(0).hash).hex()
    finally:
        ledger.close()
    led = bundle["ledger"]
    # anchored at block 0 (the chaincode definition's config); every config block since, up to this one
    # (the first test's retirement of the customer's key is one too when it ran first)
    updates = [b["number"] for b in led["config_updates"]]
    assert led["config"]["number"] == 0 and updates[-1] == config_number and updates == sorted(set(updates))
    tx_blocks = [t["block"] for t in bundle["transactions"]]
    assert min(tx_blocks) < config_number < max(tx_blocks)  # the proof spans the config update
    report = verify_bundle(fresh(bundle), genesis_hash=anchor)
    assert report.ok, report.summary()
    assert report.checked["config updates"] == len(updates) == report.checked["config update signatures"]
    assert report.checked["transactions"] == 7 and report.checked["readings"] == 9

    # leaving the config block out: the later blocks name a config the bundle does not carry
    dropped = fresh(bundle)
    del dropped["ledger"]["config_updates"]
    failed = {(f.part, f.check) for f in verify_bundle(dropped).failures}
    assert any(check == "config" for _part, check in failed), failed

    # every region of the new block: first, last and 6 more bytes (fixed seed), each flipped alone, fails
    rng = random.Random(57)
    missed, flips = [], 0
    for name, _c, _k in list(_config_regions(bundle)):
        size = next(len(unb64(c[k])) for n, c, k in _config_regions(bundle) if n == name)
        for pos in sorted({0, size - 1, *rng.sample(range(size), min(6, size))}):
            tampered = fresh(bundle)
            container, k = next((c, k) for n, c, k in _config_regions(tampered) if n == name)
            raw = bytearray(unb64(container[k]))
            raw[pos] ^= 0x01
            container[k] = b64(bytes(raw))
            flips += 1
            got = verify_bundle(tampered)
            if got.ok or not all(f.part and f.check for f in got.failures):
                missed.append((name, pos))
    assert flips >= 16 and missed == []
    # every value of the new section changed alone fails
    changed_ok = []
    for path in _leaves(led["config_updates"]):
        tampered = fresh(bundle)
        target: Any = tampered["ledger"]["config_updates"]
        for k in path[:-1]:
            target = target[k]
        v = target[path[-1]]
        target[path[-1]] = v + 1 if isinstance(v, int) else v[:-1] + ("A" if v[-1] != "A" else "B")
        if verify_bundle(tampered).ok:
            changed_ok.append(path)
    assert changed_ok == []

    # the update's own checks, on the real configs: applying its write set to the config before it gives
    # the new config only with the provider admin's signature; without it the MSP change is not allowed
    previous = common_pb2.Block()
    previous.data.data.append(
        unb64((led["config_updates"][-2] if len(updates) > 1 else led["config"])["data"][0])
    )
    before = ChannelTrust.from_config_block(previous)
    update_block = common_pb2.Block()
    update_block.data.data.append(unb64(led["config_updates"][-1]["data"][0]))
    after = ChannelTrust.from_config_block(update_block)
    from fabric_protos.common import configtx_pb2

    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(update_block.data.data[0]).payload)
    last = configtx_pb2.ConfigEnvelope.FromString(payload.data).last_update
    cue = configtx_pb2.ConfigUpdateEnvelope.FromString(common_pb2.Payload.FromString(last.payload).data)
    update = configtx_pb2.ConfigUpdate.FromString(cue.config_update)
    admin_id = before.identity(
        common_pb2.SignatureHeader.FromString(cue.signatures[0].signature_header).creator
    )
    denied: list[str] = []
    assert _apply(before.config.channel_group, update.write_set, "/Channel", before, [admin_id], denied) == (
        after.config.channel_group
    )
    assert denied == []
    _apply(before.config.channel_group, update.write_set, "/Channel", before, [], denied)
    assert admin_id.msp_id == PROVIDER and "admin" in admin_id.ous  # NodeOU admin
    assert denied and f"/Channel/Application/{PROVIDER}/Admins" in denied[0]
