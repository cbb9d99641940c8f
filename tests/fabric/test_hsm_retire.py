"""Retiring a rotated node key on a real HSM network (ADR 0056): after `rotate-node-key peer-customer` and
`retire-node-key peer-customer`, the customer org's channel MSP carries a CRL (signed by the org CA) for the
old certificate, and an endorsement signed with the old key on the peer's token is refused at commit
(ENDORSEMENT_POLICY_FAILURE), while the same forgery was VALID before the CRL (so the forgery is right and
the CRL is what refuses it) and the peer's new key endorses as before.

Uses the session network when that one is HSM-backed (LEDGERHUB_FABRIC_HSM=1), else brings up its own
(the `hsm_network` fixture of test_hsm_network, one network for this module).
"""

from __future__ import annotations

import hashlib
import json
import uuid
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
from tests.fabric.test_hsm_network import _node_cert, _same_key, _submit_settled, hsm_network  # noqa: F401
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.hsm_sign import sign_on_token

pytestmark = [pytest.mark.fabric, pytest.mark.hsm]


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
    hsm_network: FabricNetwork,  # noqa: F811
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
