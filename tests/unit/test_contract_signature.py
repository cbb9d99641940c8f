"""chaincode.signature: device signatures and keys, malformed input never crashes."""

from __future__ import annotations

import base64

import pytest
import rfc8785

from chaincode.errors import ChaincodeError
from chaincode.signature import check_public_key, load_public_key, signed_bytes, verify_message
from tests.helpers.chaincode import make_device_key, reading, signed_message

pytestmark = pytest.mark.unit


def test_signed_bytes_are_rfc8785_without_signature() -> None:
    msg = {"readings": [reading("r1")], "message_id": "m", "device_id": "d", "signature": "x"}
    assert signed_bytes(msg) == rfc8785.dumps(
        {"device_id": "d", "message_id": "m", "readings": [reading("r1")]}
    )


def test_valid_signature_verifies_and_any_change_does_not() -> None:
    key = make_device_key()
    msg = signed_message(key, [reading("r1")])
    verify_message(msg, key.public_pem)
    for field, value in (("device_id", "other"), ("message_id", "m2"), ("extra", 1)):
        with pytest.raises(ChaincodeError) as info:
            verify_message({**msg, field: value}, key.public_pem)
        assert info.value.code == "bad_signature"


def test_high_s_and_low_s_both_verify() -> None:
    # devices are not required to normalise s (unlike Fabric endorsements); both forms are valid ECDSA
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    key = make_device_key()
    msg = signed_message(key, [reading("r1")])
    r, s = decode_dss_signature(base64.b64decode(msg["signature"]))
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    flipped = base64.b64encode(encode_dss_signature(r, n - s)).decode()
    verify_message({**msg, "signature": flipped}, key.public_pem)


@pytest.mark.parametrize(
    "signature",
    ["", "====", "AAAA", base64.b64encode(b"\x30\x06\x02\x01\x00\x02\x01\x00").decode(), None, []],
)
def test_malformed_signatures_are_bad_signature(signature: object) -> None:
    key = make_device_key()
    msg = {**signed_message(key, [reading("r1")]), "signature": signature}
    with pytest.raises(ChaincodeError) as info:
        verify_message(msg, key.public_pem)
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize("pem", ["", "garbage", "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"])
def test_malformed_public_key_is_bad_public_key(pem: str) -> None:
    with pytest.raises(ChaincodeError) as info:
        load_public_key(pem)
    assert info.value.code == "bad_public_key"
    with pytest.raises(ChaincodeError):
        check_public_key(pem)


def test_stored_key_that_no_longer_parses_is_bad_public_key() -> None:
    key = make_device_key()
    msg = signed_message(key, [reading("r1")])
    with pytest.raises(ChaincodeError) as info:
        verify_message(msg, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert info.value.code == "bad_public_key"


def test_message_that_cannot_be_canonicalised_is_invalid_argument() -> None:
    key = make_device_key()
    msg = {**signed_message(key, [reading("r1")]), "n": 2**60}
    with pytest.raises(ChaincodeError) as info:
        verify_message(msg, key.public_pem)
    assert info.value.code == "invalid_argument"
