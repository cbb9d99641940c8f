"""A Fabric channel's trust, read from its config block alone: MSPs, identities, signatures, policies.

Offline and self-contained (protobuf decoders and `cryptography`, no ledger, no network), for the Fabric
proof verifier (`hub.audit.fabric_verify`, ADR 0034). What it does, after Fabric's own code:

- `ChannelTrust.from_config_block(bytes)`: the `common.Config` inside the block's one `CONFIG` envelope;
  each org group's `MSP` value (`FabricMSPConfig`: root and intermediate CAs, admins, CRLs, NodeOUs), and
  the policy tree (`/Channel/Orderer/BlockValidation`, `/Channel/Application/LifecycleEndorsement`, ...).
- `identity(serialized)`: a `SerializedIdentity` whose certificate chains (signature by signature) to one of
  its MSP's root CAs, through the MSP's intermediates, and is not on a CRL of the MSP. As Fabric's MSP, the
  check is of the chain, not of the wall clock (msp/mspimplvalidate.go sets CurrentTime to NotBefore + 1 s).
- `verify(identity, signature, data)`: ECDSA P-256 over SHA-256, DER, low-S (peers refuse high-S).
- `satisfies(policy, identities)`: `SignaturePolicyEnvelope` (n-out-of over MSPRole principals, each
  identity used once, as cauthdsl) and `ImplicitMetaPolicy` (ANY/ALL/MAJORITY of a sub-policy of the child
  groups), with NodeOU roles (peer, client, admin, orderer) read from the certificate's OU.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2, msp_principal_pb2

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ROLES = msp_principal_pb2.MSPRole.MSPRoleType


class TrustError(ValueError):
    """The config block or an identity cannot be read."""


@dataclass(frozen=True)
class Identity:
    """A validated signer: MSP id, its certificate, and the roles its NodeOU grants."""

    msp_id: str
    cert: x509.Certificate
    serialized: bytes
    ous: frozenset[str]
    is_admin: bool


@dataclass
class Msp:
    msp_id: str
    roots: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    admins: list[bytes]  # DER
    crls: list[x509.CertificateRevocationList]
    node_ous: dict[str, str] = field(default_factory=dict)  # role name -> OU value (when enabled)

    def fingerprints(self) -> list[str]:
        import hashlib

        return [hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in self.roots]


def _certs(pems: Sequence[bytes]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(bytes(p)) for p in pems]


def _load_msp(value: bytes) -> Msp:
    config = msp_config_pb2.MSPConfig.FromString(value)
    if config.type != 0:
        raise TrustError(f"MSP type {config.type} is not an X.509 (FABRIC) MSP")
    fab = msp_config_pb2.FabricMSPConfig.FromString(config.config)
    crls = [x509.load_pem_x509_crl(bytes(pem)) for pem in fab.revocation_list]
    admins = [c.public_bytes(serialization.Encoding.DER) for c in _certs(fab.admins)]
    ous: dict[str, str] = {}
    if fab.fabric_node_ous.enable:
        n = fab.fabric_node_ous
        for role, ident in (
            ("CLIENT", n.client_ou_identifier),
            ("PEER", n.peer_ou_identifier),
            ("ADMIN", n.admin_ou_identifier),
            ("ORDERER", n.orderer_ou_identifier),
        ):
            if ident.organizational_unit_identifier:
                ous[role] = ident.organizational_unit_identifier
    return Msp(fab.name, _certs(fab.root_certs), _certs(fab.intermediate_certs), admins, crls, ous)


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def revoked_by(crls: Sequence[x509.CertificateRevocationList], cert: x509.Certificate,
               issuer: x509.Certificate) -> bool:
    """Whether `cert` is on a CRL of its `issuer`, decided as Fabric's MSP does (msp/mspimplvalidate.go):
    a CRL whose AuthorityKeyIdentifier is the issuer's SubjectKeyIdentifier, listing the serial number, and
    signed by that issuer; a CRL with the right AKI but another signer is skipped, not trusted."""
    ski = _key_id(issuer)
    if ski is None:
        return False
    for crl in crls:
        try:
            aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        except x509.ExtensionNotFound:
            continue
        if aki != ski or crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None:
            continue
        try:
            if crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                return True
        except (TypeError, ValueError):
            continue
    return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_signature(public_key: object, signature: bytes, data: bytes) -> bool:
    """ECDSA P-256/SHA-256, DER, low-S only (as Fabric's BCCSP)."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        _r, s = decode_dss_signature(bytes(signature))
        if s > P256_ORDER // 2:
            return False
        public_key.verify(bytes(signature), bytes(data), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


class ChannelTrust:
    """MSPs and policies of one channel configuration."""

    def __init__(self, channel_id: str, config: configtx_pb2.Config) -> None:
        self.channel_id = channel_id
        self.config = config
        self.msps: dict[str, Msp] = {}
        self._policies: dict[str, tuple[configtx_pb2.ConfigGroup, str]] = {}
        self._seen: dict[bytes, Identity | TrustError] = {}
        self._walk(config.channel_group, "/Channel")

    @classmethod
    def from_config_block(cls, block: common_pb2.Block) -> ChannelTrust:
        if len(block.data.data) != 1:
            raise TrustError("a config block holds exactly one envelope")
        envelope = common_pb2.Envelope.FromString(block.data.data[0])
        payload = common_pb2.Payload.FromString(envelope.payload)
        header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        if header.type != common_pb2.CONFIG:
            raise TrustError(f"block {block.header.number} is not a config block (type {header.type})")
        config = configtx_pb2.ConfigEnvelope.FromString(payload.data).config
        return cls(header.channel_id, config)

    def _walk(self, group: configtx_pb2.ConfigGroup, path: str) -> None:
        for name in group.policies:
            self._policies[f"{path}/{name}"] = (group, name)
        if "MSP" in group.values:
            msp = _load_msp(group.values["MSP"].value)
            self.msps[msp.msp_id] = msp
        for name, child in group.groups.items():
            self._walk(child, f"{path}/{name}")

    # --- identities ---------------------------------------------------------------------------------
    def identity(self, serialized: bytes) -> Identity:
        """The validated identity behind `SerializedIdentity` bytes; TrustError names what is wrong.
        Each distinct identity is validated once (a proof repeats the same few certificates)."""
        key = bytes(serialized)
        if key not in self._seen:
            try:
                self._seen[key] = self._identity(key)
            except TrustError as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, TrustError):
            raise found
        return found

    def _identity(self, serialized: bytes) -> Identity:
        try:
            sid = identities_pb2.SerializedIdentity.FromString(bytes(serialized))
            cert = x509.load_pem_x509_certificate(sid.id_bytes)
        except Exception as exc:  # protobuf DecodeError, ValueError from x509
            raise TrustError(f"identity unreadable: {exc}") from exc
        msp = self.msps.get(sid.mspid)
        if msp is None:
            raise TrustError(f"MSP {sid.mspid!r} is not in the channel's config block")
        chain = self._chain(msp, cert)
        if chain is None:
            raise TrustError(f"certificate does not chain to {sid.mspid}'s root CA in the config block")
        for child, issuer in itertools.pairwise(chain):
            if revoked_by(msp.crls, child, issuer):
                raise TrustError(f"certificate is revoked by {sid.mspid}'s CRL")
        ous = frozenset(
            str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return Identity(sid.mspid, cert, bytes(serialized), ous, der in msp.admins)

    def _chain(self, msp: Msp, cert: x509.Certificate) -> list[x509.Certificate] | None:
        """cert, intermediates..., root: each signed by the next (at most 4 intermediates)."""
        chain = [cert]
        for _ in range(5):
            top = chain[-1]
            for root in msp.roots:
                if _issued_by(top, root):
                    return [*chain, root]
            nxt = next((i for i in msp.intermediates if i not in chain and _issued_by(top, i)), None)
            if nxt is None:
                return None
            chain.append(nxt)
        return None

    def verify(self, ident: Identity, signature: bytes, data: bytes) -> bool:
        return verify_signature(ident.cert.public_key(), signature, data)

    # --- policies -----------------------------------------------------------------------------------
    def has_role(self, ident: Identity, msp_id: str, role: int) -> bool:
        if ident.msp_id != msp_id:
            return False
        if role == ROLES.MEMBER:
            return True
        msp = self.msps[msp_id]
        name = ROLES.Name(role)
        if name == "ADMIN" and ident.is_admin:
            return True
        ou = msp.node_ous.get(name)
        return ou is not None and ou in ident.ous

    def _principal(self, principal: msp_principal_pb2.MSPPrincipal, ident: Identity) -> bool:
        kind = principal.principal_classification
        if kind == msp_principal_pb2.MSPPrincipal.ROLE:
            role = msp_principal_pb2.MSPRole.FromString(principal.principal)
            return self.has_role(ident, role.msp_identifier, role.role)
        if kind == msp_principal_pb2.MSPPrincipal.IDENTITY:
            return bytes(principal.principal) == ident.serialized
        return False  # OU and other principal kinds: not used by this network; never satisfied

    def signature_policy(
        self, envelope: policies_pb2.SignaturePolicyEnvelope, idents: Sequence[Identity]
    ) -> bool:
        """cauthdsl: n-out-of with each identity used at most once; identities deduplicated."""
        unique: list[Identity] = []
        for i in idents:
            if all(i.serialized != u.serialized for u in unique):
                unique.append(i)
        principals = list(envelope.identities)

        def ev(rule: policies_pb2.SignaturePolicy, used: list[bool]) -> bool:
            if rule.WhichOneof("Type") == "signed_by":
                if not 0 <= rule.signed_by < len(principals):
                    return False
                for k, ident in enumerate(unique):
                    if not used[k] and self._principal(principals[rule.signed_by], ident):
                        used[k] = True
                        return True
                return False
            verified = 0
            for sub in rule.n_out_of.rules:
                trial = list(used)
                if ev(sub, trial):
                    verified += 1
                    used[:] = trial
            return verified >= rule.n_out_of.n

        return ev(envelope.rule, [False] * len(unique))

    def policy(self, path: str, idents: Sequence[Identity]) -> bool:
        """Evaluate the channel policy at `path` (e.g. /Channel/Orderer/BlockValidation)."""
        found = self._policies.get(path)
        if found is None:
            raise TrustError(f"policy {path} is not in the config block")
        group, name = found
        policy = group.policies[name].policy
        if policy.type == policies_pb2.Policy.SIGNATURE:
            return self.signature_policy(
                policies_pb2.SignaturePolicyEnvelope.FromString(policy.value), idents
            )
        if policy.type == policies_pb2.Policy.IMPLICIT_META:
            meta = policies_pb2.ImplicitMetaPolicy.FromString(policy.value)
            base = path.rsplit("/", 1)[0]
            subs = [
                self.policy(f"{base}/{child}/{meta.sub_policy}", idents)
                for child in sorted(group.groups)
                if meta.sub_policy in group.groups[child].policies
            ]
            need = {
                policies_pb2.ImplicitMetaPolicy.ANY: 1,
                policies_pb2.ImplicitMetaPolicy.ALL: len(subs),
                policies_pb2.ImplicitMetaPolicy.MAJORITY: len(subs) // 2 + 1,
            }[meta.rule]
            return sum(subs) >= need
        raise TrustError(f"policy {path} has type {policy.type}, which this verifier does not evaluate")
