"""Who is a member of the channel's decisions, and who must sign for a change (ADR 0063).

The founding channel names its business parties in explicit signature policies under /Channel/Application
(network/configtx.yaml): `Admins` = AND(Provider admin, Customer admin), `LifecycleEndorsement` =
AND(Provider peer, Customer peer), `Endorsement` = OR(Provider peer, Customer peer); the auditor is in none.
An explicit policy does not grow when an org joins (an ImplicitMeta policy would, but over every
Application org, auditor included), so `add-org` and `remove-org` rewrite these three in the same config
update that adds or removes the org's group:

- each explicit policy gains the joined org (loses the removed one); the auditor, in none of them, stays
  out; a joined org is a business party (the customer or provider of its contracts);
- `Admins` and `LifecycleEndorsement`: a majority of the members (n // 2 + 1 of n: AND for the founding
  two, 2 of 3 with one joined org, 3 of 4 with two), so no single party can block every change (its own
  removal included) and none can make one alone;
- `Endorsement`: any one member's peer (OR).

A policy that is not a signature policy (an ImplicitMeta one) is left alone: it counts the org once its
group carries its own Admins/Readers/Writers/Endorsement, which configtxgen renders for it.

`signers` works out a smallest set of orgs whose signatures satisfy a policy (signature or ImplicitMeta),
from the orgs whose keys are at hand, leaving out the ones to avoid when it can (the org being removed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fabric_protos.common import configtx_pb2, policies_pb2
from fabric_protos.msp import msp_principal_pb2

from network.procs import NetworkError

ADMIN = msp_principal_pb2.MSPRole.ADMIN
PEER = msp_principal_pb2.MSPRole.PEER
# (policy name, the role it names, how many members must sign: None = majority, 1 = any)
MEMBER_POLICIES: tuple[tuple[str, int, int | None], ...] = (
    ("Admins", ADMIN, None),
    ("LifecycleEndorsement", PEER, None),
    ("Endorsement", PEER, 1),
)


def majority(n: int) -> int:
    return n // 2 + 1


def n_of(n: int, mspids: Sequence[str], role: int) -> policies_pb2.SignaturePolicyEnvelope:
    """`n` of the `mspids` in `role`, encoded as configtxgen encodes AND(...)/OR(...)/OutOf(...)."""
    if not mspids or not 1 <= n <= len(mspids):
        raise NetworkError(f"a policy of {n} out of {list(mspids)} cannot be met")
    identities = [
        msp_principal_pb2.MSPPrincipal(
            principal_classification=msp_principal_pb2.MSPPrincipal.ROLE,
            principal=msp_principal_pb2.MSPRole(msp_identifier=m, role=role).SerializeToString(),
        )
        for m in mspids
    ]
    rules = [policies_pb2.SignaturePolicy(signed_by=i) for i in range(len(mspids))]
    rule = policies_pb2.SignaturePolicy(n_out_of=policies_pb2.SignaturePolicy.NOutOf(n=n, rules=rules))
    return policies_pb2.SignaturePolicyEnvelope(version=0, rule=rule, identities=identities)


def named(envelope: policies_pb2.SignaturePolicyEnvelope) -> list[str]:
    """The MSP ids a signature policy names, in its order, once each."""
    out: list[str] = []
    for p in envelope.identities:
        if p.principal_classification == msp_principal_pb2.MSPPrincipal.ROLE:
            m = msp_principal_pb2.MSPRole.FromString(p.principal).msp_identifier
            if m not in out:
                out.append(m)
    return out


def set_member_policies(
    config: configtx_pb2.Config, *, add: str | None = None, remove: str | None = None
) -> dict[str, list[str]]:
    """Add the org `add` to (or drop `remove` from) each explicit member policy of /Channel/Application and
    set its threshold for the new member count; return {policy name: members}. ImplicitMeta policies are
    left alone (they count the org's group by themselves)."""
    application = config.channel_group.groups["Application"]
    changed: dict[str, list[str]] = {}
    for name, role, count in MEMBER_POLICIES:
        if name not in application.policies:
            continue
        policy = application.policies[name].policy
        if policy.type != policies_pb2.Policy.SIGNATURE:
            continue
        members = named(policies_pb2.SignaturePolicyEnvelope.FromString(policy.value))
        if add and add not in members:
            members.append(add)
        if remove:
            members = [m for m in members if m != remove]
        if not members:
            raise NetworkError(f"/Channel/Application/{name} would name no org")
        need = majority(len(members)) if count is None else count
        policy.value = n_of(need, members, role).SerializeToString(deterministic=True)
        changed[name] = members
    return changed


def _signature_met(envelope: policies_pb2.SignaturePolicyEnvelope, orgs: set[str]) -> bool:
    names = [
        msp_principal_pb2.MSPRole.FromString(p.principal).msp_identifier
        if p.principal_classification == msp_principal_pb2.MSPPrincipal.ROLE
        else None
        for p in envelope.identities
    ]  # by index: a rule's signed_by points into identities
    used: set[int] = set()  # Fabric's evaluation: one signature satisfies one principal only

    def met(rule: policies_pb2.SignaturePolicy) -> bool:
        if rule.WhichOneof("Type") == "signed_by":
            if names[rule.signed_by] in orgs and rule.signed_by not in used:
                used.add(rule.signed_by)
                return True
            return False
        return sum(1 for r in rule.n_out_of.rules if met(r)) >= rule.n_out_of.n

    return met(envelope.rule)


def satisfied(
    config: configtx_pb2.Config, group_path: Sequence[str], policy: str, orgs: Iterable[str]
) -> bool:
    """Do admins (or peers) of `orgs` satisfy `policy` of the group at `group_path` (under /Channel)?"""
    group = config.channel_group
    for name in group_path:
        group = group.groups[name]
    if policy not in group.policies:
        raise NetworkError(f"no policy {'/'.join([*group_path, policy])} in the channel config")
    wrapped = group.policies[policy].policy
    signing = set(orgs)
    if wrapped.type == policies_pb2.Policy.SIGNATURE:
        return _signature_met(policies_pb2.SignaturePolicyEnvelope.FromString(wrapped.value), signing)
    if wrapped.type == policies_pb2.Policy.IMPLICIT_META:
        meta = policies_pb2.ImplicitMetaPolicy.FromString(wrapped.value)
        subgroups = sorted(group.groups)
        need = implicit_meta_need(meta.rule, len(subgroups))
        met = sum(1 for s in subgroups if satisfied(config, [*group_path, s], meta.sub_policy, signing))
        return met >= need
    raise NetworkError(f"policy {'/'.join(group_path)}/{policy} is of an unsupported type {wrapped.type}")


def signers(
    config: configtx_pb2.Config,
    group_path: Sequence[str],
    policy: str,
    available: Sequence[str],
    *,
    avoid: Iterable[str] = (),
) -> list[str]:
    """A smallest set (sorted MSP ids) of `available` orgs that satisfies the policy, without the orgs in
    `avoid` whenever the others suffice. NetworkError when even all of `available` do not."""
    avoided = [m for m in available if m in set(avoid)]
    preferred = [m for m in available if m not in avoided]
    chosen = list(preferred)
    if not satisfied(config, group_path, policy, chosen):
        chosen = [*preferred, *avoided]
        if not satisfied(config, group_path, policy, chosen):
            raise NetworkError(
                f"the admins of {sorted(available)} cannot satisfy {'/'.join([*group_path, policy])}"
            )
    for m in [*reversed(avoided), *reversed(preferred)]:  # drop what is not needed, avoided orgs first
        rest = [x for x in chosen if x != m]
        if m in chosen and rest and satisfied(config, group_path, policy, rest):
            chosen = rest
    return sorted(chosen)


def implicit_meta_need(rule: int, subgroups: int) -> int:
    """How many of `subgroups` sub-policies an ImplicitMeta policy with `rule` (ANY, ALL, MAJORITY) needs."""
    return {
        policies_pb2.ImplicitMetaPolicy.ANY: 1,
        policies_pb2.ImplicitMetaPolicy.ALL: subgroups,
        policies_pb2.ImplicitMetaPolicy.MAJORITY: subgroups // 2 + 1,
    }[rule]
