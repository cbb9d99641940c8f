"""A Fabric invoice and its proof bundle, made over the hub's HTTP API on the session's real network, and
tools to tamper with a Fabric bundle's protobuf parts (tests/fabric/test_proof_fabric.py).

`make_fabric_proof(network, tmp)`: a hub on the network; one device, the sample contract proposed and
accepted, three signed usage messages (one a resend carrying an already recorded reading), last month closed
by the operator, and `GET /v1/invoices/{id}/proof` as the auditor got it.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import proposal_response_pb2, transaction_pb2

from hub.config import Settings
from hub.keys.signer import SoftwareSigner, sign_bytes
from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import reading
from tests.helpers.story import Story, open_contract

PERIOD, START = last_month()


@dataclass
class FabricProof:
    bundle: dict[str, Any]
    invoice_id: str
    contract_id: str
    genesis_hash: str  # block 0's header hash, read from the peer by the test (the out-of-band anchor)
    refused: dict[str, int]  # token -> status of GET .../proof for parties that may not see it
    readings: int


def make_fabric_proof(network: Any, tmp: Path) -> FabricProof:
    from hub.ledger.fabric import open_fabric_ledger

    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=network.network_json))
    story = Story(kind="fabric", ledger=ledger, suffix=uuid.uuid4().hex[:10], tmp=tmp)
    try:
        with story.hub() as client:
            contract, (key,) = open_contract(client, story, start=START)
            cid, device = contract["id"], contract["assets"][0]
            rs = [reading(story.id(f"r{i}"), "scan", "1", ts(PERIOD, 1 + i % 20, 9, i)) for i in range(24)]
            rs += [
                reading(story.id(f"h{i}"), "magnet_hours", "0.75", ts(PERIOD, 10, 12, i)) for i in range(4)
            ]
            messages = [
                usage(key, story.id("m1"), rs[:12], device_id=device),
                # a resend: one reading already recorded, one new
                usage(key, story.id("m1-again"), [rs[0], rs[12]], device_id=device),
                usage(key, story.id("m2"), rs[13:], device_id=device),
            ]
            for message in messages:
                r = post_usage(client, message)
                assert r.status_code == 202, r.text
            closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
            assert closed.status_code == 200, closed.text
            invoice_id = closed.json()["id"]
            got = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-auditor"))
            assert got.status_code == 200, got.text
            refused = {
                tok: client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth(tok)).status_code
                for tok in ("tok-other-customer", "tok-device")
            }
            anchor = bytes(ledger.block(0).hash).hex()
            return FabricProof(got.json(), invoice_id, cid, anchor, refused, len(rs))
    finally:
        ledger.close()


# --- tampering with protobuf parts -----------------------------------------------------------------


def fresh(bundle: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(bundle)


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def tx_entry(bundle: dict[str, Any], fn: str, n: int = 0) -> dict[str, Any]:
    return [t for t in bundle["transactions"] if t["function"] == fn][n]


def block_of(bundle: dict[str, Any], number: int) -> dict[str, Any]:
    return next(b for b in bundle["blocks"] if b["number"] == number)


def edit_action(
    bundle: dict[str, Any], fn: str, change: Callable[[transaction_pb2.ChaincodeEndorsedAction], None]
) -> None:
    """Rewrite the endorsed action of the first `fn` transaction in its block (signatures left as is)."""
    entry = tx_entry(bundle, fn)
    block = block_of(bundle, entry["block"])
    env = common_pb2.Envelope.FromString(unb64(block["data"][entry["index"]]))
    payload = common_pb2.Payload.FromString(env.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    change(cap.action)
    tx.actions[0].payload = cap.SerializeToString()
    payload.data = tx.SerializeToString()
    env.payload = payload.SerializeToString()
    block["data"][entry["index"]] = b64(env.SerializeToString())


def proposal_response_payload(bundle: dict[str, Any], fn: str) -> bytes:
    out: list[bytes] = []
    edit_action(bundle, fn, lambda action: out.append(action.proposal_response_payload))
    proposal_response_pb2.ProposalResponsePayload.FromString(out[0])
    return out[0]


@dataclass
class Forger:
    """A CA of our own with a certificate for `msp_id` that looks like the real ones (OU, O, CN)."""

    msp_id: str
    ou: str
    signer: SoftwareSigner
    pem: bytes

    def serialized(self) -> bytes:
        return identities_pb2.SerializedIdentity(mspid=self.msp_id, id_bytes=self.pem).SerializeToString()

    def sign(self, data: bytes) -> bytes:
        return sign_bytes(self.signer, data)


def forger(msp_id: str, ou: str) -> Forger:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, msp_id),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"ca.{msp_id}")])
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, msp_id),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{ou}0.{msp_id}")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256())
    )
    return Forger(msp_id, ou, SoftwareSigner(key, cert), cert.public_bytes(serialization.Encoding.PEM))


def make_many_batches_proof(network: Any, batches: int) -> dict[str, Any]:
    """A contract whose period has `batches` RecordUsage transactions (one message, one reading each),
    submitted from 6 threads straight through the ledger, closed, and its bundle built as the auditor. More
    than 50 batches make Fabric summarise the close's range read as Merkle hashes."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from hub.audit.proof import build_bundle
    from hub.ledger.fabric import open_fabric_ledger
    from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract
    from tests.helpers.chaincode import signed_message as sign

    def arg(body: dict[str, Any]) -> list[str]:
        return [json.dumps(body, sort_keys=True)]

    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=network.network_json))
    try:
        s = uuid.uuid4().hex[:8]
        key, device, cid = make_device_key(f"many-{s}"), f"dev-many-{s}", f"ctr-many-{s}"
        ledger.submit("RegisterAsset", arg(sample_asset(key, device)), as_org=PROVIDER)
        ledger.submit("ProposeContract", arg(sample_contract(id=cid, assets=[device], start=START)),
                      as_org=PROVIDER)
        ledger.submit("AcceptContract", arg({"contract_id": cid}), as_org=CUSTOMER)

        def record(i: int) -> None:
            one = [reading(f"{s}-r{i}", "scan", "1", ts(PERIOD, 1 + i % 20, 8 + i % 10, i % 60))]
            message = sign(key, one, device_id=device, message_id=f"{s}-m{i}")
            ledger.submit("RecordUsage", arg({"messages": [message]}), as_org=PROVIDER if i % 2 else CUSTOMER)

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(record, range(batches)))
        ledger.submit("CloseBillingPeriod", arg({"contract_id": cid, "period": PERIOD}), as_org=PROVIDER)
        return build_bundle(ledger, f"inv-{cid}-{PERIOD}", as_org="AuditorMSP")
    finally:
        ledger.close()
