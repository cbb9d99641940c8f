"""Pure functions of the key area: EC point normalisation, the HSM key adapter, canonical payloads."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.keys.certs import SignerPrivateKey
from hub.keys.documents import DocumentSignatureError, canonical_invoice, verify_invoice_json
from hub.keys.pkcs11 import HsmError, _Pin, public_key_from_point
from hub.keys.signer import SoftwareSigner, is_low_s, verify_bytes

pytestmark = pytest.mark.unit


def _point() -> tuple[ec.EllipticCurvePublicKey, bytes]:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    return pub, pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def test_ec_point_raw_and_der_wrapped_give_the_same_key() -> None:
    pub, raw = _point()
    wrapped = bytes([0x04, len(raw)]) + raw  # DER OCTET STRING, as SoftHSM returns CKA_EC_POINT
    assert public_key_from_point(raw).public_numbers() == pub.public_numbers()
    assert public_key_from_point(wrapped).public_numbers() == pub.public_numbers()
    long_form = bytes([0x04, 0x81, len(raw)]) + raw
    assert public_key_from_point(long_form).public_numbers() == pub.public_numbers()


@pytest.mark.parametrize("bad", [b"", b"\x04" * 10, b"\x03" + b"\x01" * 32])
def test_ec_point_garbage_is_refused(bad: bytes) -> None:
    with pytest.raises(HsmError) as exc:
        public_key_from_point(bad)
    assert exc.value.code == "hsm_bad_point"


def test_pin_holder_never_shows_the_pin() -> None:
    pin = _Pin("1234-secret")
    assert "1234" not in repr(pin) and "1234" not in str(pin) and f"{pin}" == "_Pin(***)"
    assert pin.reveal() == "1234-secret"


def test_signer_private_key_signs_through_the_signer_and_refuses_export() -> None:
    signer = SoftwareSigner()
    key = SignerPrivateKey(signer)
    sig = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    assert is_low_s(sig) and verify_bytes(signer.public_key(), sig, b"data")
    with pytest.raises(TypeError):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    with pytest.raises(TypeError):
        key.private_numbers()
    with pytest.raises(TypeError):
        key.sign(b"data", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(TypeError):
        key.exchange(ec.ECDH(), signer.public_key())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    ).sign(key, hashes.SHA256())
    assert csr.is_signature_valid


def test_canonical_invoice_ignores_key_order_and_whitespace() -> None:
    a = canonical_invoice({"b": "1.00", "a": [1, {"y": 2, "x": 1}]})
    b = canonical_invoice({"a": [1, {"x": 1, "y": 2}], "b": "1.00"})
    assert a == b == b'{"a":[1,{"x":1,"y":2}],"b":"1.00"}'
    assert hashlib.sha256(a).digest() != hashlib.sha256(canonical_invoice({"b": "1.01"})).digest()


@pytest.mark.parametrize("x5c", [5, {"a": 1}, [5], ["not base64!"], ["AAAA"]],
                         ids=["number", "object", "array-of-number", "not-base64", "not-a-certificate"])
def test_malformed_x5c_is_a_bad_jws_not_a_crash(x5c: object) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "x5c": x5c}).encode()).rstrip(b"=")
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json({"total": "1.00"}, header.decode() + ".." + "A" * 86)
    assert exc.value.code == "bad_jws"
