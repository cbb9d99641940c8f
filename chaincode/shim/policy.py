"""Key-level endorsement policies as Fabric stores them.

`Stub.set_key_endorsement(key, orgs)` means "a member of each of these orgs must endorse a write of `key`".
Fabric keeps that under the key's `VALIDATION_PARAMETER` metadata as a serialized
`common.SignaturePolicyEnvelope`: one ROLE principal per org and an n-out-of-n rule over them. The peer's
validator evaluates those bytes, so they must be exactly that structure; we build it with the orgs sorted so
two endorsers produce byte-identical write sets (a mismatch would fail endorsement comparison).
"""

from __future__ import annotations

from collections.abc import Sequence

from fabric_protos.common import policies_pb2
from fabric_protos.msp import msp_principal_pb2

VALIDATION_PARAMETER = "VALIDATION_PARAMETER"


def key_policy_bytes(orgs: Sequence[str], role: str = "PEER") -> bytes:
    """SignaturePolicyEnvelope: every org in `orgs` (sorted, deduplicated) must sign with `role`.

    PEER, not MEMBER: the chaincode's endorsement policy names `'Org.peer'` principals, and the Fabric
    gateway plans endorsements by principal. With MEMBER here and PEER there it treats them as two
    different principals, sends one proposal twice to the same peer and gives up ("failed to collect
    enough transaction endorsements"). Endorsers are peers, so PEER is also the precise requirement."""
    unique = sorted(set(orgs))
    if not unique:
        raise ValueError("a key endorsement policy needs at least one org")
    role_value = msp_principal_pb2.MSPRole.MSPRoleType.Value(role)
    identities = [
        msp_principal_pb2.MSPPrincipal(
            principal_classification=msp_principal_pb2.MSPPrincipal.ROLE,
            principal=msp_principal_pb2.MSPRole(msp_identifier=org, role=role_value).SerializeToString(),
        )
        for org in unique
    ]
    rule = policies_pb2.SignaturePolicy(
        n_out_of=policies_pb2.SignaturePolicy.NOutOf(
            n=len(unique), rules=[policies_pb2.SignaturePolicy(signed_by=i) for i in range(len(unique))]
        )
    )
    envelope = policies_pb2.SignaturePolicyEnvelope(version=0, rule=rule, identities=identities)
    return envelope.SerializeToString(deterministic=True)


def orgs_from_policy(data: bytes) -> list[str]:
    """Inverse of `key_policy_bytes` for the policies we write: the MSP ids that must all sign.

    A policy we did not write (e.g. 1-out-of-2) cannot be expressed as "all of these orgs"; rather than
    silently misreport it we raise ValueError.
    """
    envelope = policies_pb2.SignaturePolicyEnvelope()
    envelope.ParseFromString(data)
    orgs: list[str] = []
    for principal in envelope.identities:
        if principal.principal_classification != msp_principal_pb2.MSPPrincipal.ROLE:
            raise ValueError("key policy has a non-role principal")
        role = msp_principal_pb2.MSPRole()
        role.ParseFromString(principal.principal)
        orgs.append(role.msp_identifier)
    rule = envelope.rule
    n_out_of = rule.n_out_of
    all_of = rule.WhichOneof("Type") == "n_out_of" and n_out_of.n == len(orgs) == len(n_out_of.rules)
    if not all_of:
        raise ValueError("key policy is not an all-of-these-orgs policy")
    return sorted(set(orgs))
