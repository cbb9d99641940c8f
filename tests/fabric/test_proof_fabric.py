"""Proof bundles of a Fabric invoice (ADR 0034), made over HTTP on the session's real network: the bundle
verifies offline (in a child process without a network), and every change to it — records, JSON fields,
single bytes of every protobuf region, forged identities, missing endorsements — fails, naming the part."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fabric_protos.common import common_pb2

from hub.audit.verify import verify_bundle
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.fabric_proof import (
    FabricProof,
    b64,
    block_of,
    edit_action,
    forger,
    fresh,
    make_fabric_proof,
    make_many_batches_proof,
    tx_entry,
    unb64,
)

pytestmark = pytest.mark.fabric
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made(fabric_network: FabricNetwork, tmp_path_factory: pytest.TempPathFactory) -> FabricProof:
    return make_fabric_proof(fabric_network, tmp_path_factory.mktemp("fabric-proof"))


@pytest.fixture(scope="module")
def bundle(made: FabricProof) -> dict[str, Any]:
    return made.bundle


def test_proof_over_http_verifies(made: FabricProof, bundle: dict[str, Any]) -> None:
    assert made.refused == {"tok-other-customer": 404, "tok-device": 403}
    assert bundle["ledger"]["kind"] == "fabric" and bundle["ledger"]["network_id"] == "billing"
    assert bundle["invoice"]["id"] == made.invoice_id and bundle["invoice"]["readings"] == made.readings
    fns = [t["function"] for t in bundle["transactions"]]
    assert fns == ["RegisterAsset", "ProposeContract", "AcceptContract", *["RecordUsage"] * 3,
                   "CloseBillingPeriod"]
    # the config block is the genesis block, fetched from the peer (its hash as the peer reports it)
    assert bundle["ledger"]["config"]["number"] == 0
    definition = bundle["ledger"]["chaincode"]
    assert definition["name"] == "billing" and definition["status"] == "VALID"
    assert [b["number"] for b in bundle["blocks"]] == sorted(
        {definition["block"], *(t["block"] for t in bundle["transactions"])}
    )
    report = verify_bundle(fresh(bundle), genesis_hash=made.genesis_hash)
    assert report.ok, report.summary()
    assert report.genesis_hash == made.genesis_hash
    assert set(report.org_cas) == {"AuditorMSP", CUSTOMER, "OrdererMSP", PROVIDER}
    c = report.checked
    assert c["transactions"] == 7 and c["chaincode definition"] == 1
    assert c["orderer signatures"] == len(bundle["blocks"])
    assert c["block headers"] == len(bundle["blocks"]) + 1  # and the config block
    assert c["creator signatures"] == 8  # 7 proof transactions and the definition
    # accept and close carry both orgs (key-level policies); the definition both (LifecycleEndorsement)
    assert c["endorsement signatures"] == 5 + 2 * 2 + 2
    assert c["device signatures"] == 3 and c["readings"] == made.readings and c["recomputed invoice"] == 1
    forged = verify_bundle(fresh(bundle), genesis_hash="00" * 32)
    assert [(f.part, f.check) for f in forged.failures] == [("genesis", "anchor")]


def test_verifier_runs_offline_in_a_child_process(made: FabricProof, tmp_path: Path) -> None:
    """`ledgerhub audit verify` in a process without a network (own empty network namespace), and the
    verifier's import closure holds no gRPC and no ledger client."""
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(made.bundle))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = (
        "import gc, json, sys; from hub.audit.verify import verify_bundle; "
        f"r = verify_bundle(json.load(open({str(path)!r}))); "
        "mods = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'httpx', 'requests', 'urllib3') "
        "or m.startswith(('hub.ledger.fabric', 'fabric_protos.gateway'))); "
        "objs = sorted({f'{type(o).__module__}.{type(o).__name__}' for o in gc.get_objects() "
        "if type(o).__module__.startswith(('hub.ledger', 'grpc', 'sqlite3'))}); "
        "print(json.dumps({'ok': r.ok, 'network_modules': mods, 'ledger_objects': objs}))"
    )
    got = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert got.returncode == 0, got.stderr
    seen = json.loads(got.stdout.strip().splitlines()[-1])
    assert seen == {"ok": True, "network_modules": [], "ledger_objects": []}, seen
    cli = [sys.executable, "-m", "hub.cli", "audit", "verify", "--genesis", made.genesis_hash, str(path)]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0:
        cli = ["unshare", "-n", *cli]  # no interface but a downed loopback: any connection attempt fails
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout and made.genesis_hash in done.stdout
    # the audit exports read the same bundle offline; the provenance names both endorsing orgs
    period = made.invoice_id.rsplit("-", 2)
    for fmt in ("csv", "pdf"):
        export = [*cli[: cli.index("verify")], "export", "--contract", made.contract_id, "--period",
                  f"{period[-2]}-{period[-1]}", "--format", fmt, "--out", str(tmp_path / "out"),
                  "--bundle", str(path)]
        done = subprocess.run(export, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0 and "does NOT verify" not in done.stderr, done.stdout + done.stderr
    lines = (tmp_path / "out" / f"{made.invoice_id}.readings.csv").read_text().splitlines()
    assert len(lines) == 1 + made.readings
    from hub.audit.exports import provenance

    assert provenance(made.bundle).endorsing_orgs == [CUSTOMER, PROVIDER]


# --- named mutations (as tests/integration/test_audit_proof.py on embedded bundles) -----------------------


def _reading(b: dict[str, Any], n: int = 5) -> dict[str, Any]:
    return sorted(b["readings"], key=lambda r: r["id"])[n]


def _message(b: dict[str, Any], n: int) -> dict[str, Any]:
    return b["messages"][n]["message"]


def m_reading_quantity(b: dict[str, Any]) -> None:
    _reading(b)["quantity"] = "2"


def m_reading_dropped(b: dict[str, Any]) -> None:
    gone = _reading(b)["id"]
    b["readings"] = [r for r in b["readings"] if r["id"] != gone]


def m_invoice_total(b: dict[str, Any]) -> None:
    b["invoice"]["total"] = str(float(b["invoice"]["total"]) + 0.01)


def m_invoice_line(b: dict[str, Any]) -> None:
    next(ln for ln in b["invoice"]["lines"] if ln["charge_id"] == "scans")["amount"] = "1.00"


def m_invoice_status(b: dict[str, Any]) -> None:
    b["invoice"]["status"] = "SETTLED"


def m_device_signature(b: dict[str, Any]) -> None:
    _message(b, 1)["signature"] = _message(b, 0)["signature"]


def m_message_field(b: dict[str, Any]) -> None:
    _message(b, 0)["readings"][1]["quantity"] = "7"


def m_contract_plan(b: dict[str, Any]) -> None:
    b["contract"]["charges"][0]["unit_price"] = "1.00"


def m_contract_status(b: dict[str, Any]) -> None:
    b["contract"]["status"] = "ENDED"


def m_asset_key(b: dict[str, Any]) -> None:
    b["assets"][0]["public_key"] = make_device_key("forger").public_pem


def m_tx_status(b: dict[str, Any]) -> None:
    tx_entry(b, "RecordUsage", 1)["status"] = "MVCC_READ_CONFLICT"


def m_tx_dropped(b: dict[str, Any]) -> None:
    usage = tx_entry(b, "RecordUsage", 0)
    b["transactions"] = [t for t in b["transactions"] if t is not usage]


def m_tx_twice(b: dict[str, Any]) -> None:
    b["transactions"].append(fresh(b["transactions"][2]))


def m_extra_field(b: dict[str, Any]) -> None:
    b["transactions"][0]["note"] = "trust me"


def m_tx_index(b: dict[str, Any]) -> None:
    tx_entry(b, "CloseBillingPeriod")["index"] = 1


def m_envelope_byte(b: dict[str, Any]) -> None:
    entry = tx_entry(b, "CloseBillingPeriod")
    block = block_of(b, entry["block"])
    raw = bytearray(unb64(block["data"][entry["index"]]))
    raw[len(raw) // 2] ^= 0x01
    block["data"][entry["index"]] = b64(bytes(raw))


def m_customer_endorsement_dropped(b: dict[str, Any]) -> None:
    """The acceptance without the customer's endorsement: the contract key's key-level policy (set by the
    proposal) needs provider AND customer."""

    def drop(action: Any) -> None:
        keep = [e for e in action.endorsements if CUSTOMER.encode() not in e.endorser]
        del action.endorsements[:]
        action.endorsements.extend(keep)

    edit_action(b, "AcceptContract", drop)


def m_endorsement_signature(b: dict[str, Any]) -> None:
    def swap(action: Any) -> None:
        action.endorsements[0].signature, action.endorsements[1].signature = (
            action.endorsements[1].signature, action.endorsements[0].signature)

    edit_action(b, "CloseBillingPeriod", swap)


def m_forged_endorser(b: dict[str, Any]) -> None:
    """A ProviderMSP 'peer' certificate from a CA that is not in the config block, validly signing."""
    fake = forger(PROVIDER, "peer")

    def replace(action: Any) -> None:
        for e in action.endorsements:
            if PROVIDER.encode() in e.endorser:
                e.endorser = fake.serialized()
                e.signature = fake.sign(action.proposal_response_payload + e.endorser)

    edit_action(b, "CloseBillingPeriod", replace)


def _close_block(b: dict[str, Any]) -> dict[str, Any]:
    return block_of(b, tx_entry(b, "CloseBillingPeriod")["block"])


def m_forged_orderer(b: dict[str, Any]) -> None:
    """The close's block signed by an OrdererMSP 'orderer' certificate from a foreign CA."""
    fake = forger("OrdererMSP", "orderer")
    block = _close_block(b)
    header = common_pb2.SignatureHeader(creator=fake.serialized(), nonce=b"n" * 24).SerializeToString()
    from hub.audit.fabric_chain import Block

    parsed = Block(block["number"], common_pb2.BlockHeader(
        number=block["number"], previous_hash=bytes.fromhex(block["previous_hash"]),
        data_hash=bytes.fromhex(block["data_hash"])), [], None, False)
    signed = unb64(block["orderer_metadata"]) + header + parsed.der
    block["orderer_signatures"] = [{"header": b64(header), "signature": b64(fake.sign(signed))}]


def m_orderer_signature_dropped(b: dict[str, Any]) -> None:
    _close_block(b)["orderer_signatures"] = []


def m_last_config(b: dict[str, Any]) -> None:
    block = _close_block(b)
    md = common_pb2.OrdererBlockMetadata.FromString(unb64(block["orderer_metadata"]))
    md.last_config.index = 3
    block["orderer_metadata"] = b64(md.SerializeToString())


def _linked(b: dict[str, Any]) -> dict[str, Any]:
    numbers = {x["number"] for x in b["blocks"]}
    return next(x for x in b["blocks"] if x["number"] - 1 in numbers)


def m_previous_hash(b: dict[str, Any]) -> None:
    _linked(b)["previous_hash"] = "11" * 32


def m_data_hash(b: dict[str, Any]) -> None:
    _close_block(b)["data_hash"] = "22" * 32


def m_config_byte(b: dict[str, Any]) -> None:
    raw = bytearray(unb64(b["ledger"]["config"]["data"][0]))
    raw[len(raw) // 3] ^= 0x01
    b["ledger"]["config"]["data"][0] = b64(bytes(raw))


def m_definition_pointer(b: dict[str, Any]) -> None:
    b["ledger"]["chaincode"]["index"] = 1


def m_blocks_reordered(b: dict[str, Any]) -> None:
    b["blocks"][0], b["blocks"][1] = b["blocks"][1], b["blocks"][0]


MUTATIONS: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    (m_reading_quantity, "reading ", "differs"),
    (m_reading_quantity, "invoice", "readings_digest"),
    (m_reading_dropped, "reading ", "missing"),
    (m_reading_dropped, "invoice", "readings"),
    (m_invoice_total, "invoice", "total"),
    (m_invoice_line, "invoice line scans", "line_amount"),
    (m_invoice_status, "invoice", "differs"),
    (m_device_signature, "message ", "device_signature"),
    (m_message_field, "message ", "device_signature"),
    (m_message_field, "message ", "differs"),
    (m_contract_plan, "contract", "differs"),
    (m_contract_status, "contract", "differs"),
    (m_asset_key, "asset ", "differs"),
    (m_tx_status, "tx ", "validation"),
    (m_tx_dropped, "reading ", "missing_tx"),
    (m_tx_twice, "tx ", "format"),
    (m_extra_field, "tx ", "format"),
    (m_tx_index, "tx ", "inclusion"),
    (m_envelope_byte, "block ", "data_hash"),
    (m_customer_endorsement_dropped, "tx ", "key_policy"),
    (m_customer_endorsement_dropped, "block ", "data_hash"),
    (m_endorsement_signature, f"endorsement by {PROVIDER} on tx ", "endorsement"),
    (m_forged_endorser, "endorsement on tx ", "certificate"),
    (m_forged_orderer, "orderer signature 0 on block ", "certificate"),
    (m_forged_orderer, "block ", "orderer_policy"),
    (m_orderer_signature_dropped, "block ", "orderer_policy"),
    (m_last_config, "orderer signature 0 on block ", "orderer_signature"),
    (m_last_config, "block ", "config"),
    (m_previous_hash, "block ", "hash_link"),
    (m_data_hash, "block ", "data_hash"),
    (m_config_byte, "config block", "data_hash"),
    (m_definition_pointer, "chaincode definition", "format"),
    (m_definition_pointer, "tx ", "definition"),
    (m_blocks_reordered, "block ", "format"),
]


@pytest.mark.parametrize(
    ("mutate", "part", "check"), MUTATIONS, ids=[f"{m.__name__[2:]}-{c}" for m, _p, c in MUTATIONS]
)
def test_a_mutation_fails_and_names_the_part(
    bundle: dict[str, Any], mutate: Callable[[dict[str, Any]], None], part: str, check: str
) -> None:
    tampered = fresh(bundle)
    mutate(tampered)
    report = verify_bundle(json.loads(json.dumps(tampered)))
    assert not report.ok
    hits = [f for f in report.failures if f.part.startswith(part) and f.check == check]
    assert hits, f"expected {check} at {part!r}, got:\n{report.summary()}"
    assert "FAILED" in report.summary() and str(hits[0]) in report.summary()


def test_forged_identities_are_named(bundle: dict[str, Any]) -> None:
    """Signed by keys whose certificates are not from the config block's MSPs: the reason says so."""
    for mutate, who in ((m_forged_endorser, PROVIDER), (m_forged_orderer, "OrdererMSP")):
        tampered = fresh(bundle)
        mutate(tampered)
        failures = [f for f in verify_bundle(tampered).failures if f.check == "certificate"]
        assert failures and f"does not chain to {who}'s root CA in the config block" in failures[0].detail


# --- every byte region and every kind of field -------------------------------------------------------------


def _regions(b: dict[str, Any]) -> Iterator[tuple[str, list[Any], Any]]:
    """(name, container, key) of every base64 protobuf region of the bundle."""
    for block in [b["ledger"]["config"], *b["blocks"]]:
        n = block["number"]
        for i in range(len(block["data"])):
            yield f"block {n} envelope {i}", block["data"], i
        if "orderer_metadata" in block:
            yield f"block {n} orderer metadata", block, "orderer_metadata"
            for j, sig in enumerate(block["orderer_signatures"]):
                yield f"block {n} signature {j} header", sig, "header"
                yield f"block {n} signature {j}", sig, "signature"


def test_any_single_byte_flipped_in_any_region_is_reported(bundle: dict[str, Any]) -> None:
    """Each protobuf region (envelopes, config block, orderer metadata, signature headers, signatures): its
    first and last byte and 6 more spread over it (fixed seed), each flipped alone, fails and is named."""
    rng = random.Random(34)
    missed, regions, flips = [], 0, 0
    for name, _c, _k in list(_regions(bundle)):
        regions += 1
        size = next(len(unb64(c[k])) for n, c, k in _regions(bundle) if n == name)
        for pos in sorted({0, size - 1, *rng.sample(range(size), min(6, size))}):
            tampered = fresh(bundle)
            container, key = next((c, k) for n, c, k in _regions(tampered) if n == name)
            raw = bytearray(unb64(container[key]))
            raw[pos] ^= 0x01
            container[key] = b64(bytes(raw))
            report = verify_bundle(tampered)
            flips += 1
            if report.ok or not all(f.part and f.check for f in report.failures):
                missed.append((name, pos))
    assert regions >= 4 * len(bundle["blocks"]) and flips > 8 * len(bundle["blocks"])
    assert missed == []


def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _change(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str) and value:
        return value[:-1] + ("A" if value[-1] != "A" else "B")
    return "x"


def test_any_single_value_changed_is_reported(bundle: dict[str, Any]) -> None:
    """One leaf of every kind of field (keys, not list indexes; fixed seed), changed alone, fails."""
    by_kind: dict[tuple, list[tuple]] = {}
    for p in _leaves(bundle):
        by_kind.setdefault(tuple(k for k in p if isinstance(k, str)), []).append(p)
    rng = random.Random(34)
    sample = [rng.choice(group) for group in by_kind.values()]
    assert len(sample) > 60
    missed = []
    for path in sample:
        tampered = fresh(bundle)
        target = tampered
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = _change(target[path[-1]])
        if verify_bundle(tampered).ok:
            missed.append(path)
    assert missed == []


# --- more than 50 usage batches: Fabric records the close's range read as a Merkle summary ---------------


def test_more_than_50_batches_are_proven_through_the_merkle_summary(fabric_network: FabricNetwork) -> None:
    """The closing transaction's read of the period's usage batches is, with 60 batches, only a Merkle
    summary (kvledger's maxDegree is 50); the verifier rebuilds it from the bundle's RecordUsage writes.
    A bundle that leaves out one batch (with its readings and message, so every record is consistent) no
    longer reproduces the summary: the omission is caught and named."""
    from hub.audit.fabric_tx import parse_endorser_tx

    bundle = make_many_batches_proof(fabric_network, 60)
    close = tx_entry(bundle, "CloseBillingPeriod")
    ranges = parse_endorser_tx(unb64(block_of(bundle, close["block"])["data"][close["index"]]))
    assert [r.merkle is not None for r in ranges.rwset["billing"].ranges] == [True]
    report = verify_bundle(fresh(bundle))
    assert report.ok, report.summary()
    assert report.checked["range read summaries"] == 1 and report.checked["readings"] == 60

    hidden = fresh(bundle)
    gone = tx_entry(hidden, "RecordUsage", 7)
    hidden["transactions"] = [t for t in hidden["transactions"] if t is not gone]
    readings = [r for r in hidden["readings"] if r["tx_id"] == gone["tx_id"]]
    hidden["readings"] = [r for r in hidden["readings"] if r["tx_id"] != gone["tx_id"]]
    hidden["messages"] = [m for m in hidden["messages"] if m["readings"] != [readings[0]["id"]]]
    hidden["invoice"]["readings"] -= 1  # the hub's story: one reading fewer (the amounts would differ too)
    failures = verify_bundle(hidden).failures
    named = [f for f in failures if f.part == f"tx {close['tx_id'][:12]}…" and f.check == "completeness"]
    assert named, failures
