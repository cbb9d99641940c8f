"""Proof bundles of a real invoice (embedded ledger, real contract): the untouched bundle verifies, and
every single change to it is reported, naming the part that failed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.audit.proof import FORMAT, ProofError, build_bundle
from hub.audit.verify import verify_bundle
from hub.ledger.embedded.transaction import EndorsementSig, Envelope
from tests.helpers.audit import INVOICE_ID, PERIOD, TOTAL, Billed, fresh
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """The conftest's bundle through JSON, as an auditor receives it."""
    return json.loads(json.dumps(bundle))


def test_bundle_contents(billed: Billed, bundle: dict[str, Any]) -> None:
    assert bundle["format"] == FORMAT
    assert bundle["ledger"]["network_id"] == billed.ledger.network_id
    assert bundle["invoice"]["id"] == INVOICE_ID and bundle["invoice"]["total"] == TOTAL
    assert len(bundle["readings"]) == 170 == bundle["invoice"]["readings"]
    assert {m["message"]["message_id"] for m in bundle["messages"]} == {
        "r-msg-0",
        "r-msg-1",
        "resend-1",
        "r-msg-2",
    }
    resend = next(m for m in bundle["messages"] if m["message"]["message_id"] == "resend-1")
    assert len(resend["message"]["readings"]) == 2 and len(resend["readings"]) == 1  # one was a duplicate
    fns = [t["function"] for t in bundle["transactions"]]
    assert fns == [
        "RegisterAsset",
        "ProposeContract",
        "AcceptContract",
        "RecordUsage",
        "RecordUsage",
        "RecordUsage",
        "CloseBillingPeriod",
    ]
    assert {t["tx_id"] for t in bundle["transactions"] if t["function"] == "RecordUsage"} == set(
        billed.usage_txs
    )
    # the chain runs from genesis to the close; the later block is not needed, the unrelated block 5 in
    # the middle is there with its header only
    assert [b["number"] for b in bundle["blocks"]] == list(range(1, billed.ledger.height() - 1))
    assert [b["number"] for b in bundle["blocks"] if "tx_hashes" not in b] == [5]
    assert bundle["blocks"][4]["header"] == bytes(billed.ledger.block(5).raw["header"]).decode()
    genesis_orgs = json.loads(bundle["ledger"]["genesis"]["config"])["orgs"]
    assert {PROVIDER, CUSTOMER} <= set(genesis_orgs)


def test_untouched_bundle_verifies(bundle: dict[str, Any]) -> None:
    report = verify_bundle(fresh(bundle))
    assert report.ok, report.summary()
    assert report.invoice_id == INVOICE_ID
    assert report.checked["device signatures"] == 4
    assert report.checked["readings"] == 170
    assert report.checked["transactions"] == 7
    assert report.checked["endorsement signatures"] == 9  # accept and close carry both orgs
    assert "VERIFIED" in report.summary()


# --- mutations ---------------------------------------------------------------------------------------


def _tx(b: dict[str, Any], fn: str, n: int = 0) -> dict[str, Any]:
    return [t for t in b["transactions"] if t["function"] == fn][n]


def _edit_envelope(entry: dict[str, Any], change: Callable[[Envelope], Envelope]) -> None:
    env = Envelope.decode(base64.b64decode(entry["envelope"]))
    entry["envelope"] = base64.b64encode(change(env).encode()).decode()


def _replace_endorsement(env: Envelope, org: str, **fields: Any) -> Envelope:
    ends = tuple(
        EndorsementSig(**{"msp_id": e.msp_id, "cert": e.cert, "signature": e.signature, **fields})
        if e.msp_id == org
        else e
        for e in env.endorsements
    )
    return Envelope(env.proposal_bytes, env.creator_signature, env.response_bytes, ends)


def _foreign_cert(org: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, f"peer.{org}"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _reading(b: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(r for r in b["readings"] if r["id"] == rid)


def _message(b: dict[str, Any], mid: str) -> dict[str, Any]:
    return next(m["message"] for m in b["messages"] if m["message"]["message_id"] == mid)


def _header(b: dict[str, Any], number: int, **fields: Any) -> None:
    entry = b["blocks"][number - 1]
    entry["header"] = json.dumps(
        {**json.loads(entry["header"]), **fields}, sort_keys=True, separators=(",", ":")
    )


def m_reading_quantity(b: dict[str, Any]) -> None:
    _reading(b, "r-000017")["quantity"] = "2"


def m_reading_dropped(b: dict[str, Any]) -> None:
    b["readings"] = [r for r in b["readings"] if r["id"] != "r-000017"]


def m_invoice_total(b: dict[str, Any]) -> None:
    b["invoice"]["total"] = "13655.26"


def m_invoice_line(b: dict[str, Any]) -> None:
    b["invoice"]["lines"][1]["amount"] = "10500.00"


def m_invoice_status(b: dict[str, Any]) -> None:
    b["invoice"]["status"] = "SETTLED"


def m_device_signature(b: dict[str, Any]) -> None:
    msg = _message(b, "r-msg-1")
    msg["signature"] = _message(b, "r-msg-0")["signature"]  # a valid signature, of another message


def m_message_field(b: dict[str, Any]) -> None:
    _message(b, "r-msg-2")["readings"][3]["timestamp"] = "2026-11-20T10:00:00+01:00"


def m_endorsement_signature(b: dict[str, Any]) -> None:
    entry = _tx(b, "AcceptContract")
    _edit_envelope(entry, lambda env: _replace_endorsement(env, CUSTOMER, signature=env.creator_signature))


def m_endorsement_certificate(b: dict[str, Any]) -> None:
    _edit_envelope(
        _tx(b, "CloseBillingPeriod"),
        lambda env: _replace_endorsement(env, PROVIDER, cert=_foreign_cert(PROVIDER)),
    )


def m_genesis_ca(b: dict[str, Any]) -> None:
    config = json.loads(b["ledger"]["genesis"]["config"])
    config["orgs"][CUSTOMER] = [_foreign_cert(CUSTOMER).decode()]
    b["ledger"]["genesis"]["config"] = json.dumps(config, sort_keys=True, separators=(",", ":"))


def m_block_hash(b: dict[str, Any]) -> None:
    b["blocks"][3]["hash"] = "00" * 32


def m_block_header_link(b: dict[str, Any]) -> None:
    _header(b, 3, previous_hash="11" * 32)


def m_unrelated_block_header(b: dict[str, Any]) -> None:
    unrelated = next(e for e in b["blocks"] if "tx_hashes" not in e)
    assert unrelated["number"] == 5
    _header(b, 5, data_hash="33" * 32)
    unrelated["hash"] = hashlib.sha256(unrelated["header"].encode()).hexdigest()  # consistent, but forged


def m_block_tx_hashes(b: dict[str, Any]) -> None:
    block = b["blocks"][_tx(b, "RecordUsage", 1)["block"] - 1]
    block["tx_hashes"][0] = "22" * 32


def m_tx_status(b: dict[str, Any]) -> None:
    entry = _tx(b, "RecordUsage", 2)
    entry["status"] = "MVCC_READ_CONFLICT"


def m_tx_dropped(b: dict[str, Any]) -> None:
    usage = _tx(b, "RecordUsage", 0)
    b["transactions"] = [t for t in b["transactions"] if t is not usage]


def m_extra_field(b: dict[str, Any]) -> None:
    b["transactions"][0]["note"] = "trust me"


def m_tx_twice(b: dict[str, Any]) -> None:
    b["transactions"].append(fresh(b["transactions"][2]))


def m_contract_status(b: dict[str, Any]) -> None:
    b["contract"]["status"] = "ENDED"


def m_contract_plan(b: dict[str, Any]) -> None:
    b["contract"]["charges"][2]["unit_price"] = "11.50"


def m_asset_key(b: dict[str, Any]) -> None:
    b["assets"][0]["public_key"] = make_device_key("forger").public_pem


MUTATIONS: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    # (mutation, the part named, the check that fails there)
    (m_reading_quantity, "reading r-000017", "differs"),
    (m_reading_quantity, "invoice", "readings_digest"),
    (m_reading_dropped, "reading r-000017", "missing"),
    (m_reading_dropped, "invoice", "readings"),
    (m_invoice_total, "invoice", "total"),
    (m_invoice_line, "invoice line scans", "line_amount"),
    (m_invoice_status, "invoice", "differs"),
    (m_device_signature, "message r-msg-1", "device_signature"),
    (m_message_field, "message r-msg-2", "device_signature"),
    (m_message_field, "message r-msg-2", "differs"),
    (m_endorsement_signature, "endorsement by CustomerMSP on tx ", "endorsement"),
    (m_endorsement_signature, "tx ", "inclusion"),
    (m_endorsement_certificate, "endorsement by ProviderMSP on tx ", "certificate"),
    (m_genesis_ca, "genesis", "data_hash"),
    (m_block_hash, "block 4", "block_hash"),
    (m_block_header_link, "block 3", "hash_link"),
    (m_block_header_link, "block 4", "hash_link"),
    (m_unrelated_block_header, "block 6", "hash_link"),
    (m_block_tx_hashes, "block ", "data_hash"),
    (m_tx_status, "tx ", "validation"),
    (m_tx_dropped, "reading r-000000", "missing_tx"),
    (m_contract_plan, "contract", "differs"),
    (m_contract_status, "contract", "differs"),
    (m_extra_field, "tx ", "format"),
    (m_tx_twice, "tx ", "format"),
    (m_asset_key, "asset mri-berlin-01", "differs"),
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


def test_messages_name_the_transaction(bundle: dict[str, Any]) -> None:
    tampered = fresh(bundle)
    m_reading_quantity(tampered)
    report = verify_bundle(tampered)
    tx_id = _reading(bundle, "r-000017")["tx_id"]
    assert f"reading r-000017: quantity differs from recorded transaction {tx_id[:12]}" in report.summary()
    assert "invoice: total" in report.summary()  # one more scan: the recomputed amounts differ too


def test_a_credit_note_or_unknown_invoice_has_no_proof(billed: Billed) -> None:
    from hub.ledger.base import ChaincodeRejected

    with pytest.raises(ChaincodeRejected):
        build_bundle(billed.ledger, "inv-nope-2026-11", as_org=PROVIDER)
    with pytest.raises(ProofError) as no_envelope:
        build_bundle(_NoEnvelope(billed.ledger), INVOICE_ID, as_org=PROVIDER)
    assert no_envelope.value.code == "proof_unsupported"
    # a Fabric transaction record whose Envelope bytes are no endorser transaction: refused, not a traceback
    with pytest.raises(ProofError, match="Fabric") as fabric:
        build_bundle(_NoEnvelope(billed.ledger, raw={"envelope": b"\x0a\x02pb"}), INVOICE_ID, as_org=PROVIDER)
    assert fabric.value.code == "proof_unsupported"


class _NoEnvelope:
    """A ledger whose transaction records carry no raw envelope (e.g. an in-memory test ledger)."""

    def __init__(self, inner: Any, raw: dict[str, Any] | None = None) -> None:
        self.inner = inner
        self.raw = raw or {}
        self.network_id = inner.network_id

    def evaluate(self, *a: Any, **kw: Any) -> bytes:
        return self.inner.evaluate(*a, **kw)

    def tx(self, tx_id: str) -> Any:
        import dataclasses

        return dataclasses.replace(self.inner.tx(tx_id), raw=self.raw)

    def block(self, n: int) -> Any:
        return self.inner.block(n)


def test_period_of_the_fixture() -> None:
    assert PERIOD == "2026-11"


def test_genesis_anchor(billed: Billed, bundle: dict[str, Any]) -> None:
    anchor = bytes(billed.ledger.block(0).hash).hex()
    report = verify_bundle(fresh(bundle), genesis_hash=anchor.upper())
    assert report.ok and report.genesis_hash == anchor
    assert f"trust anchor: genesis {anchor}" in report.summary()
    assert set(report.org_cas) == {"AuditorMSP", CUSTOMER, PROVIDER}
    forged = verify_bundle(fresh(bundle), genesis_hash="00" * 32)
    assert [(f.part, f.check) for f in forged.failures] == [("genesis", "anchor")]


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
        last = value[-1]
        return value[:-1] + ("A" if last != "A" else "B")
    return "x"


def test_any_single_value_changed_is_reported(bundle: dict[str, Any]) -> None:
    """A sample of every kind of leaf in the bundle (fixed seed): each change alone fails verification."""
    import random

    paths = list(_leaves(bundle))
    by_kind: dict[tuple, list[tuple]] = {}
    for p in paths:  # group by shape (keys, not list indexes) so every kind of field is sampled
        by_kind.setdefault(tuple(k for k in p if isinstance(k, str)), []).append(p)
    rng = random.Random(8)
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
