"""Embedded ledger: who must endorse (docs/chaincode.md), and what validation does with what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from hub.keys.signer import sign_bytes, verify_bytes
from hub.ledger.base import EndorsementFailed, TransactionInvalid
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.embedded.transaction import EndorsementSig, Envelope
from tests.helpers.embedded import AUDITOR, CUSTOMER, PROVIDER, arg, make_signers, open_toy_ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(toy_ledger: EmbeddedLedger) -> EmbeddedLedger:
    """This module's tests run on the toy chaincode's ledger (tests/integration/conftest.py)."""
    return toy_ledger


def _lock(ledger: EmbeddedLedger, key: str) -> None:
    ledger.submit("lock", [arg({"key": key, "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)


def test_key_level_policy_brings_second_endorser(ledger: EmbeddedLedger) -> None:
    lock = ledger.submit("lock", [arg({"key": "contract~1", "orgs": [CUSTOMER, PROVIDER]})], as_org=PROVIDER)
    # the policy set by a transaction applies from the next one: the lock itself needed one org only
    assert [e.msp_id for e in ledger.tx(lock.tx_id).endorsements] == [PROVIDER]
    assert json.loads(ledger.evaluate("policy", [arg({"key": "contract~1"})], as_org=AUDITOR)) == [
        CUSTOMER,
        PROVIDER,
    ]
    commit = ledger.submit("put", [arg({"key": "contract~1", "value": "accepted"})], as_org=CUSTOMER)
    rec = ledger.tx(commit.tx_id)
    assert sorted(e.msp_id for e in rec.endorsements) == [CUSTOMER, PROVIDER]
    assert rec.endorsements[0].msp_id == CUSTOMER  # the submitting org's peer first
    for e in rec.endorsements:
        key = x509.load_pem_x509_certificate(e.certificate).public_key()
        assert verify_bytes(key, e.signature, rec.raw["response"])
    # the policy survives value writes
    assert json.loads(ledger.evaluate("policy", [arg({"key": "contract~1"})], as_org=AUDITOR)) == [
        CUSTOMER,
        PROVIDER,
    ]
    # an unrelated key still needs one org
    other = ledger.submit("put", [arg({"key": "usage~1", "value": "1"})], as_org=PROVIDER)
    assert [e.msp_id for e in ledger.tx(other.tx_id).endorsements] == [PROVIDER]


def test_under_endorsed_transaction_is_marked_invalid(ledger: EmbeddedLedger) -> None:
    _lock(ledger, "invoice~1")
    height = ledger.height()
    prepared = ledger.endorse(
        "put", [arg({"key": "invoice~1", "value": "forged"})], as_org=PROVIDER, endorsing_orgs=[PROVIDER]
    )
    assert prepared.endorsers == (PROVIDER,)
    [result] = ledger.order([prepared.envelope])
    assert result.status == "ENDORSEMENT_POLICY_FAILURE"
    assert "CustomerMSP" in result.reason
    assert ledger.evaluate("get", [arg({"key": "invoice~1"})], as_org=PROVIDER) == b"locked"
    rec = ledger.tx(prepared.tx_id)
    assert rec.status == "ENDORSEMENT_POLICY_FAILURE" and rec.block == height
    assert ledger.block(height).raw["validation"] == ["ENDORSEMENT_POLICY_FAILURE"]
    # the auditor org alone never satisfies the chaincode policy
    audit_only = ledger.endorse(
        "put", [arg({"key": "x", "value": "1"})], as_org=AUDITOR, endorsing_orgs=[AUDITOR]
    )
    assert ledger.order([audit_only.envelope])[0].status == "ENDORSEMENT_POLICY_FAILURE"


def test_auditor_submission_is_endorsed_by_a_policy_org(ledger: EmbeddedLedger) -> None:
    commit = ledger.submit("put", [arg({"key": "note", "value": "seen"})], as_org=AUDITOR)
    rec = ledger.tx(commit.tx_id)
    assert rec.creator_msp_id == AUDITOR
    assert [e.msp_id for e in rec.endorsements] == [PROVIDER]


def test_policy_set_earlier_in_the_same_block_applies(ledger: EmbeddedLedger) -> None:
    ledger.submit("put", [arg({"key": "k", "value": "0"})], as_org=PROVIDER)
    lock = ledger.endorse("lock", [arg({"key": "k", "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)
    blind = ledger.endorse("put", [arg({"key": "k", "value": "1"})], as_org=PROVIDER)
    assert blind.endorsers == (PROVIDER,)  # endorsed before the lock committed
    first, second = ledger.order([lock.envelope, blind.envelope])
    assert first.block == second.block
    assert (first.status, second.status) == ("VALID", "ENDORSEMENT_POLICY_FAILURE")


def test_diverging_peers_fail_endorsement(ledger: EmbeddedLedger) -> None:
    _lock(ledger, "r")
    height = ledger.height()
    with pytest.raises(EndorsementFailed, match="different response"):
        ledger.submit("random", [arg({"key": "r"})], as_org=PROVIDER)
    assert ledger.height() == height


def _forge(ledger: EmbeddedLedger, envelope: bytes, **changes: object) -> bytes:
    env = Envelope.decode(envelope)
    return Envelope(
        changes.get("proposal_bytes", env.proposal_bytes),  # type: ignore[arg-type]
        changes.get("creator_signature", env.creator_signature),  # type: ignore[arg-type]
        changes.get("response_bytes", env.response_bytes),  # type: ignore[arg-type]
        changes.get("endorsements", env.endorsements),  # type: ignore[arg-type]
    ).encode()


def test_forged_signatures_are_invalid(ledger: EmbeddedLedger, signers: dict) -> None:
    _lock(ledger, "inv")
    # the provider signs in the customer's name with its own certificate: not a customer identity
    good = ledger.endorse("put", [arg({"key": "inv", "value": "x"})], as_org=PROVIDER)
    env = Envelope.decode(good.envelope)
    fake = EndorsementSig(
        CUSTOMER, ledger.certificate(PROVIDER), sign_bytes(signers[PROVIDER], env.response_bytes)
    )
    forged = _forge(ledger, good.envelope, endorsements=(env.endorsements[0], fake))
    assert ledger.order([forged])[0].status == "ENDORSEMENT_POLICY_FAILURE"
    # a creator signature by another key
    bad_creator = _forge(
        ledger, good.envelope, creator_signature=sign_bytes(signers[CUSTOMER], env.proposal_bytes)
    )
    assert ledger.order([bad_creator])[0].status == "BAD_CREATOR_SIGNATURE"
    # endorsements over different response bytes (a write changed after signing)
    tampered = env.response_bytes.replace(b'"eA=="', b'"eQ=="')  # base64 of "x" -> "y"
    assert tampered != env.response_bytes
    assert ledger.order([_forge(ledger, good.envelope, response_bytes=tampered)])[0].status == (
        "ENDORSEMENT_POLICY_FAILURE"
    )
    # garbage
    assert ledger.order([b"not an envelope"])[0].status == "BAD_PAYLOAD"
    # the untouched original is still valid, and only once
    assert ledger.order([good.envelope])[0].status == "VALID"
    assert ledger.order([good.envelope])[0].status == "DUPLICATE_TXID"
    assert ledger.tx(good.tx_id).status == "VALID"


def test_submit_raises_transaction_invalid(ledger: EmbeddedLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = ledger.endorse("incr", [arg({"key": "n"})], as_org=PROVIDER)
    ledger.submit("incr", [arg({"key": "n"})], as_org=PROVIDER)
    monkeypatch.setattr(ledger, "endorse", lambda *a, **k: stale)
    with pytest.raises(TransactionInvalid) as info:
        ledger.submit("incr", [arg({"key": "n"})], as_org=PROVIDER)
    assert info.value.status == "MVCC_READ_CONFLICT"
    assert info.value.retryable
    assert info.value.tx_id == stale.tx_id
    assert ledger.evaluate("get", [arg({"key": "n"})], as_org=PROVIDER) == b"1"


def test_policy_naming_an_org_without_a_signer_here_cannot_be_endorsed(tmp_path: Path) -> None:
    led = open_toy_ledger(tmp_path / "l", make_signers((PROVIDER, CUSTOMER)))
    try:
        led.submit("lock", [arg({"key": "k", "orgs": [PROVIDER, AUDITOR]})], as_org=PROVIDER)
        height = led.height()
        with pytest.raises(EndorsementFailed, match="AuditorMSP"):
            led.submit("put", [arg({"key": "k", "value": "x"})], as_org=PROVIDER)
        assert led.height() == height
        assert led.evaluate("get", [arg({"key": "k"})], as_org=CUSTOMER) == b"locked"
    finally:
        led.close()
