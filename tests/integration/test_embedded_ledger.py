"""Embedded ledger: the Ledger protocol round trip, refusals, Stub semantics seen through transactions."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography import x509

from chaincode.stub import create_composite_key
from hub.keys.signer import verify_bytes
from hub.ledger.base import ChaincodeRejected, EndorsementFailed, Ledger, LedgerNotFound
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.embedded.identity import serialize_creator
from hub.ledger.embedded.transaction import Proposal
from tests.helpers.embedded import AUDITOR, CUSTOMER, PROVIDER, arg

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(toy_ledger: EmbeddedLedger) -> EmbeddedLedger:
    """This module's tests run on the toy chaincode's ledger (tests/integration/conftest.py)."""
    return toy_ledger


def test_is_a_ledger(ledger: EmbeddedLedger) -> None:
    assert isinstance(ledger, Ledger)
    assert ledger.network_id.startswith("embedded-")
    assert ledger.height() == 1  # genesis


def test_submit_then_evaluate_round_trip(ledger: EmbeddedLedger) -> None:
    commit = ledger.submit("put", [arg({"key": "a", "value": "hello"})], as_org=PROVIDER)
    assert commit.valid and commit.status == "VALID"
    assert commit.payload == b"ok"
    assert commit.block == 1
    assert ledger.height() == 2
    assert ledger.evaluate("get", [arg({"key": "a"})], as_org=CUSTOMER) == b"hello"
    # evaluate never writes
    ledger.evaluate("put", [arg({"key": "b", "value": "x"})], as_org=PROVIDER)
    assert ledger.height() == 2
    assert ledger.evaluate("get", [arg({"key": "b"})], as_org=PROVIDER) == b""


def test_transaction_record_is_verifiable(ledger: EmbeddedLedger) -> None:
    commit = ledger.submit("put", [arg({"key": "a", "value": "v"}).encode()], as_org=CUSTOMER)
    rec = ledger.tx(commit.tx_id)
    assert (rec.tx_id, rec.block, rec.index, rec.status) == (commit.tx_id, commit.block, 0, "VALID")
    assert rec.creator_msp_id == CUSTOMER
    assert rec.function == "put"
    assert rec.args == [arg({"key": "a", "value": "v"}).encode()]
    assert rec.response == b"ok"
    assert [e.msp_id for e in rec.endorsements] == [CUSTOMER]
    # tx id = SHA-256(nonce ‖ creator)
    prop = Proposal.decode(rec.raw["proposal"])
    assert hashlib.sha256(prop.nonce + serialize_creator(CUSTOMER, rec.creator_cert)).hexdigest() == rec.tx_id
    assert len(prop.nonce) == 24
    # creator signature over the proposal bytes; endorsement over the response bytes
    creator_key = x509.load_pem_x509_certificate(rec.creator_cert).public_key()
    assert verify_bytes(creator_key, rec.raw["creator_signature"], rec.raw["proposal"])
    end = rec.endorsements[0]
    assert verify_bytes(
        x509.load_pem_x509_certificate(end.certificate).public_key(), end.signature, rec.raw["response"]
    )
    assert not verify_bytes(creator_key, end.signature, rec.raw["proposal"])
    blk = ledger.block(commit.block)
    assert blk.tx_ids == [commit.tx_id]
    assert blk.previous_hash == ledger.block(0).hash
    with pytest.raises(LedgerNotFound):
        ledger.tx("0" * 64)
    with pytest.raises(LedgerNotFound):
        ledger.block(99)


def test_refusal_raises_and_writes_nothing(ledger: EmbeddedLedger) -> None:
    with pytest.raises(ChaincodeRejected) as info:
        ledger.submit("reject", [arg({"key": "r"})], as_org=PROVIDER)
    assert info.value.code == "invalid_argument"
    assert info.value.error.details == {"field": "key"}
    assert not info.value.retryable
    assert ledger.height() == 1
    assert ledger.evaluate("get", [arg({"key": "r"})], as_org=PROVIDER) == b""
    with pytest.raises(ChaincodeRejected):
        ledger.evaluate("reject", [arg({"key": "r"})], as_org=PROVIDER)
    with pytest.raises(ChaincodeRejected) as unknown:
        ledger.evaluate("nope", [], as_org=PROVIDER)
    assert unknown.value.code == "unknown_function"


def test_chaincode_crash_is_an_endorsement_failure(ledger: EmbeddedLedger) -> None:
    with pytest.raises(EndorsementFailed, match="toy bug"):
        ledger.submit("crash", [], as_org=PROVIDER)
    assert ledger.height() == 1


def test_unknown_org_cannot_act(ledger: EmbeddedLedger) -> None:
    with pytest.raises(EndorsementFailed):
        ledger.submit("put", [arg({"key": "a", "value": "v"})], as_org="MalloryMSP")


def test_stub_context_seen_by_chaincode(ledger: EmbeddedLedger) -> None:
    commit = ledger.submit("whoami", [], as_org=CUSTOMER)
    seen = json.loads(commit.payload)
    assert seen["msp"] == CUSTOMER
    assert seen["tx"] == commit.tx_id
    assert seen["channel"] == ledger.network_id
    assert seen["ts"] == ledger.tx(commit.tx_id).timestamp.isoformat()
    assert seen["ts"].endswith("+00:00")


def test_own_writes_composite_keys_and_ranges(ledger: EmbeddedLedger) -> None:
    assert (
        ledger.submit("put_then_read", [arg({"key": "k", "value": "mine"})], as_org=PROVIDER).payload
        == b"mine"
    )
    for attrs, value in (
        (["c1", "2026-01", "r1"], "1"),
        (["c1", "2026-01", "r2"], "2"),
        (["c1", "2026-02", "r3"], "3"),
    ):
        ledger.submit(
            "put_composite", [arg({"type": "reading", "attrs": attrs, "value": value})], as_org=PROVIDER
        )
    ledger.submit(
        "put_composite", [arg({"type": "readingx", "attrs": ["c1"], "value": "9"})], as_org=PROVIDER
    )
    listed = json.loads(
        ledger.evaluate(
            "list_composite", [arg({"type": "reading", "attrs": ["c1", "2026-01"]})], as_org=CUSTOMER
        )
    )
    assert listed == [
        [create_composite_key("reading", ["c1", "2026-01", "r1"]), "1"],
        [create_composite_key("reading", ["c1", "2026-01", "r2"]), "2"],
    ]
    everything = json.loads(
        ledger.evaluate("list_composite", [arg({"type": "reading", "attrs": []})], as_org=PROVIDER)
    )
    assert [v for _, v in everything] == ["1", "2", "3"]
    # simple-key range, empty end = unbounded; composite keys (leading U+0000) sort before simple keys
    ledger.submit("put", [arg({"key": "m", "value": "x"})], as_org=PROVIDER)
    assert json.loads(ledger.evaluate("scan", [arg({"start": "k", "end": "z"})], as_org=PROVIDER)) == [
        "k",
        "m",
    ]
    assert json.loads(ledger.evaluate("scan", [arg({"start": "l", "end": ""})], as_org=PROVIDER)) == ["m"]
    many = ledger.evaluate("get_many", [arg({"keys": ["m", "nope", "k", "m"]})], as_org=PROVIDER)
    assert json.loads(many) == ["x", None, "mine", "x"]


def test_range_does_not_see_own_writes(ledger: EmbeddedLedger) -> None:
    ledger.submit("put", [arg({"key": "a1", "value": "1"})], as_org=PROVIDER)
    # count_into writes its result into a2, inside the scanned range, after scanning: the scan saw a1 only
    out = ledger.submit("count_into", [arg({"start": "a", "end": "b", "target": "a2"})], as_org=PROVIDER)
    assert out.payload == b"1"
    assert ledger.evaluate("get", [arg({"key": "a2"})], as_org=PROVIDER) == b"1"


def test_history_newest_first_with_deletes(ledger: EmbeddedLedger) -> None:
    c1 = ledger.submit("put", [arg({"key": "h", "value": "1"})], as_org=PROVIDER)
    c2 = ledger.submit("put", [arg({"key": "h", "value": "2"})], as_org=CUSTOMER)
    c3 = ledger.submit("delete", [arg({"key": "h"})], as_org=PROVIDER)
    hist = json.loads(ledger.evaluate("history", [arg({"key": "h"})], as_org=AUDITOR))
    assert hist == [[c3.tx_id, "", True], [c2.tx_id, "2", False], [c1.tx_id, "1", False]]
    assert ledger.evaluate("get", [arg({"key": "h"})], as_org=PROVIDER) == b""


def test_transient_data_is_not_stored(ledger: EmbeddedLedger) -> None:
    secret = b"transient-secret-4f1c2b"
    commit = ledger.submit("transient", [arg({"key": "t"})], as_org=PROVIDER, transient={"secret": secret})
    assert commit.payload == secret
    raw = ledger.tx(commit.tx_id).raw
    assert secret not in raw["proposal"]
    assert ledger.evaluate("get", [arg({"key": "t"})], as_org=PROVIDER) == str(len(secret)).encode()


def test_closed_ledger_refuses(ledger: EmbeddedLedger) -> None:
    from hub.ledger.base import LedgerUnavailable

    ledger.close()
    with pytest.raises(LedgerUnavailable):
        ledger.submit("put", [arg({"key": "a", "value": "v"})], as_org=PROVIDER)
    with pytest.raises(LedgerUnavailable):
        ledger.evaluate("get", [arg({"key": "a"})], as_org=PROVIDER)
    ledger.close()  # idempotent
