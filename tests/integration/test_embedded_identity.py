"""Embedded ledger identities from the key area: org CA roots in genesis, key rotation mid-life, and a
certificate from a CA the network does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hub.config import Settings
from hub.keys import build_key_manager, build_signers
from hub.keys.signer import SoftwareSigner
from hub.ledger import open_ledger
from hub.ledger.base import EndorsementFailed
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.embedded.identity import cert_pem, issue_cert, make_org_ca
from hub.ledger.verify import verify_ledger
from tests.helpers.embedded import CUSTOMER, PROVIDER, arg, open_toy_ledger, toy_invoke

pytestmark = pytest.mark.integration


def test_key_manager_signers_rotate_without_breaking_the_chain(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", signer="software")
    signers = build_signers(settings)
    manager = build_key_manager(settings)
    led = open_ledger(settings, signers)
    assert isinstance(led, EmbeddedLedger)
    led.close()
    # the network trusts the org CAs of the key area, not one leaf certificate
    led = EmbeddedLedger(
        settings.data_dir, signers, chaincode=toy_invoke, chaincode_orgs=(PROVIDER, CUSTOMER)
    )
    try:
        for org in (PROVIDER, CUSTOMER):
            ca = manager.certificate(f"ca-{org}")
            assert led.genesis.orgs[org] == [cert_pem(ca)]
        led.submit("lock", [arg({"key": "inv", "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)
        before = led.submit("put", [arg({"key": "inv", "value": "1"})], as_org=CUSTOMER)
        old_cert = led.certificate(CUSTOMER)
        manager.rotate(f"endorser-{CUSTOMER}")
        assert led.certificate(CUSTOMER) != old_cert  # picked up on the next call, no reopen
        after = led.submit("put", [arg({"key": "inv", "value": "2"})], as_org=CUSTOMER)
        assert led.tx(before.tx_id).creator_cert == old_cert
        assert led.tx(after.tx_id).creator_cert == led.certificate(CUSTOMER)
        assert sorted(e.msp_id for e in led.tx(after.tx_id).endorsements) == [CUSTOMER, PROVIDER]
        report = verify_ledger(led)
        assert report.ok, report.summary()
    finally:
        led.close()


class SwappableSigner:
    """A signer whose key can be replaced while the ledger is open (stand-in for a misconfigured HSM)."""

    def __init__(self, inner: SoftwareSigner) -> None:
        self.inner = inner

    def pinned(self) -> SoftwareSigner:
        return self.inner

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.inner.public_key()

    def certificate(self) -> x509.Certificate | None:
        return self.inner.certificate()

    def sign(self, digest: bytes) -> bytes:
        return self.inner.sign(digest)


def test_certificate_from_an_unknown_ca_cannot_act(tmp_path: Path) -> None:
    ca_key, ca_cert = make_org_ca(PROVIDER)
    first = SoftwareSigner()
    first.set_certificate(issue_cert(ca_key, ca_cert, PROVIDER, first.public_key()))
    swappable = SwappableSigner(first)
    signers = {PROVIDER: swappable, CUSTOMER: SoftwareSigner()}
    led = open_toy_ledger(tmp_path / "l", signers, ca_certs={PROVIDER: [ca_cert]})
    try:
        assert led.submit("put", [arg({"key": "a", "value": "1"})], as_org=PROVIDER).valid
        other_key, other_ca = make_org_ca(PROVIDER)
        stranger = SoftwareSigner()
        stranger.set_certificate(issue_cert(other_key, other_ca, PROVIDER, stranger.public_key()))
        swappable.inner = stranger
        height = led.height()
        with pytest.raises(EndorsementFailed, match="not trusted"):
            led.submit("put", [arg({"key": "a", "value": "2"})], as_org=PROVIDER)
        assert led.height() == height
        # a certificate for another key than the signer's
        mismatched = SoftwareSigner()
        mismatched.set_certificate(x509.load_pem_x509_certificate(cert_pem(first.certificate())))  # type: ignore[arg-type]
        swappable.inner = mismatched
        with pytest.raises(EndorsementFailed, match="not trusted"):
            led.submit("put", [arg({"key": "a", "value": "3"})], as_org=PROVIDER)
        swappable.inner = first
        assert led.submit("put", [arg({"key": "a", "value": "4"})], as_org=PROVIDER).valid
        assert verify_ledger(led).ok
    finally:
        led.close()
