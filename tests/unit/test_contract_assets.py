"""RegisterAsset / GetAsset."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from chaincode import keys
from tests.helpers.chaincode import (
    AUDITOR,
    CUSTOMER,
    DEVICE_ID,
    PROVIDER,
    ChaincodeLedger,
    make_device_key,
    sample_asset,
)

pytestmark = pytest.mark.unit


def test_register_asset_records_the_provider_and_no_contract() -> None:
    ledger = ChaincodeLedger()
    key = make_device_key()
    out = ledger.submit("RegisterAsset", sample_asset(key), org=PROVIDER)
    tx_id = ledger.last_stub.tx_id
    assert out == {
        "id": DEVICE_ID,
        "description": "MRI scanner, Berlin clinic",
        "public_key": key.public_pem,
        "provider": PROVIDER,
        "contract_id": None,
        "registered_tx": tx_id,
    }
    assert ledger.state(keys.asset(DEVICE_ID)) == out
    assert ledger.evaluate("GetAsset", {"id": DEVICE_ID}, org=AUDITOR) == out
    assert ledger.endorsement(keys.asset(DEVICE_ID)) is None  # usage stays cheap: no key-level policy


def test_same_asset_again_is_a_no_op() -> None:
    ledger = ChaincodeLedger()
    key = make_device_key()
    first = ledger.submit("RegisterAsset", sample_asset(key))
    assert ledger.noop("RegisterAsset", sample_asset(key)) == first


@pytest.mark.parametrize(
    ("change", "org"),
    [
        ({"description": "another"}, PROVIDER),
        ({"public_key": make_device_key(2).public_pem}, PROVIDER),
        ({}, CUSTOMER),  # same content from another org: that org cannot take the asset over
    ],
)
def test_taken_asset_id_is_asset_exists(change: dict, org: str) -> None:
    ledger = ChaincodeLedger()
    key = make_device_key()
    ledger.submit("RegisterAsset", sample_asset(key))
    ledger.refuse("RegisterAsset", {**sample_asset(key), **change}, "asset_exists", org=org)


def _pem(private) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    "public_key",
    [
        None,
        42,
        "",
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        _pem(ec.generate_private_key(ec.SECP384R1())),
        _pem(ed25519.Ed25519PrivateKey.generate()),
    ],
)
def test_bad_public_key_is_refused(public_key: object) -> None:
    ledger = ChaincodeLedger()
    ledger.refuse(
        "RegisterAsset", {"id": DEVICE_ID, "description": "x", "public_key": public_key}, "bad_public_key"
    )


@pytest.mark.parametrize("asset_id", [None, "", 7, "a\x00b", "x" * 300, "a\ud800", "\U0010ffff"])
def test_bad_asset_id_is_invalid_argument(asset_id: object) -> None:
    ledger = ChaincodeLedger()
    body = {**sample_asset(make_device_key()), "id": asset_id}
    ledger.refuse("RegisterAsset", body, "invalid_argument")


def test_unknown_asset_query() -> None:
    ledger = ChaincodeLedger()
    ledger.refuse("GetAsset", {"id": "nope"}, "unknown_asset")
