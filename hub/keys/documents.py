"""Signed invoice documents: a detached JWS over the JSON invoice, an enveloped XMLDSig in the UBL XML.

Both sign with a `Signer` (the HSM key `documents-<org>`), so the private key is never in this process.
Verification needs only the published certificate (or the org CA that issued the embedded one).

JSON: RFC 7515 compact JWS with a detached payload (Appendix F): `BASE64URL(header)..BASE64URL(sig)`,
signing input `BASE64URL(header) "." BASE64URL(payload)`, payload = RFC 8785 canonical JSON of the invoice,
so any re-serialisation of the same invoice verifies. ES256 signatures are raw r‖s in JWS (not DER).

XML: one enveloped `ds:Signature` (exclusive c14n, ECDSA-SHA256, SHA-256 digest, Reference URI="" so the
whole document is covered); in a UBL document it goes into `ext:UBLExtensions` as UBL 2.1 prescribes.
The verifier accepts exactly these algorithms and one reference to the whole document (no wrapping).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from hub.keys.signer import Signer, pinned, ski, verify_bytes

DS = "http://www.w3.org/2000/09/xmldsig#"
EXT = "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2"
C14N_EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


class DocumentSignatureError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Verified:
    key_id: str
    certificate: x509.Certificate


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64u_dec(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _der_to_raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_to_der(raw: bytes) -> bytes:
    if len(raw) != 64:
        raise DocumentSignatureError("bad_signature", "ES256 signature must be 64 bytes")
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _signing_cert(signer: Signer) -> x509.Certificate:
    cert = signer.certificate()
    if cert is None:
        raise DocumentSignatureError("no_certificate", "the signing key has no certificate to publish")
    return cert


def _trusted_key(
    embedded: x509.Certificate | None,
    certificate: x509.Certificate | None,
    ca_certificate: x509.Certificate | None,
) -> x509.Certificate:
    if certificate is not None:
        return certificate
    if ca_certificate is None:
        raise ValueError("pass the published certificate or the CA that issued it")
    if embedded is None:
        raise DocumentSignatureError("no_certificate", "signature carries no certificate")
    try:
        embedded.verify_directly_issued_by(ca_certificate)
    except Exception:
        msg = "certificate not issued by the given CA"
        raise DocumentSignatureError("untrusted_certificate", msg) from None
    return embedded


# --- JSON: detached JWS -----------------------------------------------------------------------------


def canonical_invoice(invoice: Mapping[str, Any]) -> bytes:
    return rfc8785.dumps(dict(invoice))


def sign_invoice_json(invoice: Mapping[str, Any], signer: Signer) -> str:
    """Compact JWS (ES256) with detached payload over the RFC 8785 canonical invoice."""
    signer = pinned(signer)  # a managed signer follows rotation: kid, x5c and signature agree
    cert = _signing_cert(signer)
    header = {
        "alg": "ES256",
        "kid": signer.key_id,
        "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()],
        "typ": "JOSE",
        "cty": "application/json",
    }
    protected = _b64u(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{protected}.{_b64u(canonical_invoice(invoice))}".encode()
    der = signer.sign(hashlib.sha256(signing_input).digest())
    return f"{protected}..{_b64u(_der_to_raw(der))}"


def verify_invoice_json(
    invoice: Mapping[str, Any],
    jws: str,
    *,
    certificate: x509.Certificate | None = None,
    ca_certificate: x509.Certificate | None = None,
) -> Verified:
    """Check a detached JWS against the invoice; raises DocumentSignatureError with a code."""
    parts = jws.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise DocumentSignatureError("bad_jws", "expected a compact JWS with a detached (empty) payload")
    try:
        header = json.loads(_b64u_dec(parts[0]))
        raw = _b64u_dec(parts[2])
    except ValueError:
        msg = "JWS header or signature is not valid base64url/JSON"
        raise DocumentSignatureError("bad_jws", msg) from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise DocumentSignatureError("bad_jws", "only alg ES256 is accepted")
    embedded = None
    if header.get("x5c"):
        chain = header["x5c"]
        if not isinstance(chain, list) or not isinstance(chain[0], str):  # RFC 7515: array of base64 DER
            raise DocumentSignatureError("bad_jws", "x5c is not an array of base64 certificates")
        try:
            embedded = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
        except ValueError:
            raise DocumentSignatureError("bad_jws", "x5c is not a certificate") from None
    cert = _trusted_key(embedded, certificate, ca_certificate)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    kid = ski(public)
    if header.get("kid") != kid:
        raise DocumentSignatureError("key_mismatch", "kid does not name the certificate's key")
    signing_input = f"{parts[0]}.{_b64u(canonical_invoice(invoice))}".encode()
    if not verify_bytes(public, _raw_to_der(raw), signing_input):
        raise DocumentSignatureError("bad_signature", "JWS signature does not verify over this invoice")
    return Verified(kid, cert)


# --- XML: enveloped XMLDSig -------------------------------------------------------------------------


def _c14n(node: etree._Element) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


def _el(parent: etree._Element, tag: str, **attrib: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{DS}}}{tag}", attrib)


def _document_digest(root: etree._Element) -> bytes:
    """SHA-256 of the document without its ds:Signature (the enveloped-signature transform)."""
    clone = copy.deepcopy(root)
    for sig in clone.iter(f"{{{DS}}}Signature"):
        sig.getparent().remove(sig)
        break
    return hashlib.sha256(_c14n(clone)).digest()


def sign_xml(xml: bytes, signer: Signer) -> bytes:
    """Add one enveloped ECDSA-SHA256 signature to `xml` (UBL: inside ext:UBLExtensions)."""
    signer = pinned(signer)  # a managed signer follows rotation: kid, x5c and signature agree
    cert = _signing_cert(signer)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    root = etree.fromstring(xml, parser)
    if root.find(f".//{{{DS}}}Signature") is not None:
        raise DocumentSignatureError("already_signed", "document already carries a ds:Signature")
    if root.tag.startswith("{urn:oasis:names:specification:ubl:schema:xsd:"):
        exts = root.find(f"{{{EXT}}}UBLExtensions")
        if exts is None:
            exts = etree.Element(f"{{{EXT}}}UBLExtensions", nsmap={"ext": EXT})
            root.insert(0, exts)
        extension = etree.SubElement(exts, f"{{{EXT}}}UBLExtension")
        content = etree.SubElement(extension, f"{{{EXT}}}ExtensionContent")
        sig = etree.SubElement(content, f"{{{DS}}}Signature", nsmap={"ds": DS})
    else:
        sig = etree.SubElement(root, f"{{{DS}}}Signature", nsmap={"ds": DS})
    signed_info = _el(sig, "SignedInfo")
    _el(signed_info, "CanonicalizationMethod", Algorithm=C14N_EXC)
    _el(signed_info, "SignatureMethod", Algorithm=ECDSA_SHA256)
    ref = _el(signed_info, "Reference", URI="")
    transforms = _el(ref, "Transforms")
    _el(transforms, "Transform", Algorithm=ENVELOPED)
    _el(transforms, "Transform", Algorithm=C14N_EXC)
    _el(ref, "DigestMethod", Algorithm=SHA256)
    _el(ref, "DigestValue").text = base64.b64encode(_document_digest(root)).decode()
    der = signer.sign(hashlib.sha256(_c14n(signed_info)).digest())
    _el(sig, "SignatureValue").text = base64.b64encode(_der_to_raw(der)).decode()
    x509_data = _el(_el(sig, "KeyInfo"), "X509Data")
    _el(x509_data, "X509Certificate").text = base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)
    ).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def verify_xml(
    xml: bytes, *, certificate: x509.Certificate | None = None, ca_certificate: x509.Certificate | None = None
) -> Verified:
    """Verify the one enveloped signature; raises DocumentSignatureError with a code."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError:
        raise DocumentSignatureError("bad_xml", "document is not well-formed XML") from None
    sigs = list(root.iter(f"{{{DS}}}Signature"))
    if len(sigs) != 1:
        raise DocumentSignatureError("bad_xml_signature", f"expected one ds:Signature, found {len(sigs)}")
    sig = sigs[0]
    ns = {"ds": DS}

    def one(path: str) -> etree._Element:
        found = sig.xpath(path, namespaces=ns)
        if len(found) != 1:
            raise DocumentSignatureError("bad_xml_signature", f"expected exactly one {path}")
        return found[0]

    signed_info = one("ds:SignedInfo")
    algs = (
        one("ds:SignedInfo/ds:CanonicalizationMethod").get("Algorithm"),
        one("ds:SignedInfo/ds:SignatureMethod").get("Algorithm"),
        one("ds:SignedInfo/ds:Reference").get("URI"),
        [t.get("Algorithm") for t in sig.xpath("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform",
                                               namespaces=ns)],
        one("ds:SignedInfo/ds:Reference/ds:DigestMethod").get("Algorithm"),
    )
    if algs != (C14N_EXC, ECDSA_SHA256, "", [ENVELOPED, C14N_EXC], SHA256):
        msg = "only exc-c14n / ECDSA-SHA256 / SHA-256 over URI=''"
        raise DocumentSignatureError("unsupported_algorithm", msg)
    embedded = None
    cert_nodes = sig.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=ns)
    if cert_nodes:
        try:
            embedded = x509.load_der_x509_certificate(base64.b64decode(cert_nodes[0].text or ""))
        except ValueError:
            msg = "X509Certificate is not a certificate"
            raise DocumentSignatureError("bad_xml_signature", msg) from None
    cert = _trusted_key(embedded, certificate, ca_certificate)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    try:
        digest_node = one("ds:SignedInfo/ds:Reference/ds:DigestValue")
        expected = base64.b64decode(digest_node.text or "", validate=True)
        raw = base64.b64decode(one("ds:SignatureValue").text or "", validate=True)
    except ValueError:
        raise DocumentSignatureError("bad_xml_signature", "DigestValue/SignatureValue not base64") from None
    if _document_digest(root) != expected:
        raise DocumentSignatureError("digest_mismatch", "document content changed after signing")
    if not verify_bytes(public, _raw_to_der(raw), _c14n(signed_info)):
        raise DocumentSignatureError("bad_signature", "XML signature does not verify")
    return Verified(ski(public), cert)
