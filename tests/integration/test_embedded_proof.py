"""One transaction proven offline: the proof bundle verifies alone, and any tampering is named."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hub.ledger.verify import transaction_proof, verify_transaction_proof
from tests.helpers.embedded import CUSTOMER, PROVIDER, arg, make_signers, open_toy_ledger

pytestmark = pytest.mark.integration


def _b64_flip(text: str, pos: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[pos] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_transaction_proof_round_trip_and_tampering(tmp_path: Path) -> None:
    led = open_toy_ledger(tmp_path / "l", make_signers())
    try:
        led.submit("lock", [arg({"key": "inv", "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)
        led.submit("put", [arg({"key": "x", "value": "1"})], as_org=CUSTOMER)
        target = led.submit("put", [arg({"key": "inv", "value": "posted"})], as_org=CUSTOMER)
        led.submit("put", [arg({"key": "y", "value": "later"})], as_org=PROVIDER)
        genesis_hash = led.block(0).hash
        proof = json.loads(json.dumps(transaction_proof(led, target.tx_id)))  # survives plain JSON
    finally:
        led.close()
    assert proof["status"] == "VALID" and proof["block"] == target.block
    assert verify_transaction_proof(proof, genesis_hash=genesis_hash) == []
    assert verify_transaction_proof(proof, genesis_hash=b"\x00" * 32) == [
        "genesis block is not the trusted one"
    ]

    env = base64.b64decode(proof["envelope"])
    pos = env.index(b'"writes"') + 12
    bad_env = dict(proof, envelope=_b64_flip(proof["envelope"], pos))
    problems = verify_transaction_proof(bad_env)
    assert any("data_hash" in p or "is not transaction" in p for p in problems)
    assert any("endorsement of" in p for p in problems)

    headers = list(proof["headers"])
    raw = base64.b64decode(headers[1])
    at = raw.index(b'"data_hash":"') + 13  # replace one hex digit by another: still a readable header
    raw = raw[:at] + (b"1" if raw[at : at + 1] == b"0" else b"0") + raw[at + 1 :]
    headers[1] = base64.b64encode(raw).decode()
    assert any(
        "header chain broken at block 2" in p for p in verify_transaction_proof(dict(proof, headers=headers))
    )

    other = dict(proof, tx_id="0" * 64)
    assert any("not " + "0" * 64 in p for p in verify_transaction_proof(other))
    assert verify_transaction_proof({"envelope": "!!"})[0].startswith("proof unreadable")
    unreadable = list(proof["headers"])
    unreadable[2] = base64.b64encode(b"{not json").decode()
    assert verify_transaction_proof(dict(proof, headers=unreadable))[0].startswith(
        "header of block 2 unreadable"
    )
