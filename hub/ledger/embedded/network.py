"""The embedded network's membership: the genesis block and which certificate each org signs with.

Genesis is written once, at first start: network id, each org's root certificates, the chaincode policy.
Every later open reads it back (and refuses a corrupted one). `Identities` maps an org's injected
`Signer` to the certificate the network trusts for it, issuing one from the org's own CA when the signer
has none (see ADR 0005), and follows key rotation: a key manager's signer is pinned for each use.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509

from hub.keys.signer import Signer, pinned
from hub.ledger.base import EndorsementFailed, LedgerUnavailable

from .blocks import GENESIS_PREVIOUS, GenesisConfig, Header, data_hash, encode_header, encode_metadata
from .codec import sha256
from .identity import TrustStore, cert_pem, issue_cert, load_ca_key, make_org_ca, save_ca_key, signer_matches
from .store import BlockWrite, Store


def current(signer: Signer) -> Signer:
    """A key manager's signer follows key rotation; `pinned()` fixes one version for one use, so the
    certificate and the signature of a call always belong together."""
    return pinned(signer)


def create_genesis(
    store: Store,
    ca_dir: Path,
    signers: Mapping[str, Signer],
    *,
    network_id: str | None,
    chaincode_orgs: Sequence[str],
    chaincode_name: str,
    ca_certs: Mapping[str, Sequence[x509.Certificate]],
) -> GenesisConfig:
    """Write block 0. Orgs are those with a signer; a signer without certificate gets an org CA."""
    if not chaincode_orgs:
        raise ValueError("the chaincode policy needs at least one org")
    roots: dict[str, list[bytes]] = {}
    for org, base in sorted(signers.items()):
        signer = current(base)
        cert = signer.certificate()
        if cert is None:
            ca_key, ca_cert = make_org_ca(org)
            save_ca_key(ca_dir, org, ca_key)
            cert = issue_cert(ca_key, ca_cert, org, signer.public_key())
            roots[org] = [cert_pem(ca_cert)]
        else:
            roots[org] = [cert_pem(c) for c in ca_certs.get(org, [])] or [cert_pem(cert)]
        store.save_identity(org, signer.key_id, cert_pem(cert))
    config = GenesisConfig(
        network_id=network_id or f"embedded-{secrets.token_hex(8)}",
        orgs=roots,
        chaincode_orgs=tuple(chaincode_orgs),
        chaincode=chaincode_name,
    )
    body = config.encode()
    header = encode_header(0, GENESIS_PREVIOUS, data_hash([body]))
    block = BlockWrite(
        number=0, header=header, hash=sha256(header), metadata=encode_metadata([]), config=body
    )
    store.write_block(store.conn(), block)
    return config


def load_genesis(store: Store, network_id: str | None) -> GenesisConfig:
    row = store.block_row(0)
    if row is None:
        raise LedgerUnavailable("the embedded ledger has no genesis block")
    header_bytes, stored_hash, _meta, config = row
    header = Header.decode(header_bytes)
    if config is None or data_hash([config]) != header.data_hash or sha256(header_bytes) != stored_hash:
        raise LedgerUnavailable("genesis block of the embedded ledger is corrupted")
    genesis = GenesisConfig.decode(config)
    if network_id is not None and network_id != genesis.network_id:
        raise ValueError(
            f"ledger at {store.path.parent} is network {genesis.network_id!r}, not {network_id!r}"
        )
    return genesis


class Identities:
    """Certificates for the orgs' signers, checked against the genesis roots (all of them at open)."""

    def __init__(
        self,
        store: Store,
        ca_dir: Path,
        genesis: GenesisConfig,
        trust: TrustStore,
        signers: Mapping[str, Signer],
    ) -> None:
        self._store = store
        self._ca_dir = ca_dir
        self._genesis = genesis
        self._trust = trust
        self._signers = dict(signers)
        self._pems: dict[tuple[str, str, x509.Certificate], bytes] = {}
        self._issued: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        for org, signer in self._signers.items():
            self.resolve(org, current(signer))

    def get(self, org: str) -> tuple[bytes, Signer]:
        """The org's current (certificate PEM, signer) pair, or EndorsementFailed."""
        base = self._signers.get(org)
        if base is None:
            raise EndorsementFailed(f"no signer for org {org!r}: it cannot act on this node")
        signer = current(base)
        try:
            return self.resolve(org, signer), signer
        except ValueError as exc:
            raise EndorsementFailed(str(exc)) from exc

    def resolve(self, org: str, signer: Signer) -> bytes:
        """PEM certificate for `signer` acting for `org`; ValueError when the network cannot trust it."""
        if org not in self._genesis.orgs:
            raise ValueError(f"org {org!r} is not a member of network {self._genesis.network_id!r}")
        cert = signer.certificate()
        if cert is not None:
            cache_key = (org, signer.key_id, cert)
            pem = self._pems.get(cache_key)
            if pem is None:
                pem = cert_pem(cert)
                if self._trust.identity(org, pem) is None or not signer_matches(signer, cert):
                    raise ValueError(f"certificate of the {org} signer is not trusted by the network")
                self._pems[cache_key] = pem
            return pem
        issued = self._issued.get((org, signer.key_id))
        if issued is not None:
            return issued
        with self._lock:
            stored = self._store.identity_cert(org, signer.key_id)
            if stored is None:
                stored = self._issue(org, signer)
            self._issued[(org, signer.key_id)] = stored
        return stored

    def _issue(self, org: str, signer: Signer) -> bytes:
        ca_key = load_ca_key(self._ca_dir, org)
        roots = self._genesis.orgs[org]
        if ca_key is None or len(roots) != 1:
            raise ValueError(f"the {org} signer has no certificate and the ledger holds no CA key for {org}")
        ca_cert = x509.load_pem_x509_certificate(roots[0])
        pem = cert_pem(issue_cert(ca_key, ca_cert, org, signer.public_key()))
        self._store.save_identity(org, signer.key_id, pem)
        return pem
