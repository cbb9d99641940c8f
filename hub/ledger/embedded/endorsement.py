"""Endorsement: running the chaincode as an org's peer, and the rule for which orgs must endorse.

The rule (docs/chaincode.md, "Who must endorse") is the same at endorsement and at validation:
every written key (value or key-level policy) that carries a committed key-level policy needs an
endorsement from each org listed; a written key without one falls under the chaincode policy, a member of
ANY of the chaincode orgs (provider OR customer); a transaction that writes nothing also needs the
chaincode policy. A policy set by a transaction applies from the next one, because only committed
policies are consulted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from chaincode.errors import ChaincodeError
from hub.ledger.base import ChaincodeRejected, EndorsementFailed

from .codec import sha256
from .rwset import RWSet
from .simulator import Reader, SimulationStub
from .transaction import Proposal, Response

Chaincode = Callable[[Any, str, Sequence[bytes]], bytes]
PolicyOf = Callable[[str], Sequence[str] | None]


def simulate(
    chaincode: Chaincode,
    reader: Reader,
    proposal: Proposal,
    proposal_bytes: bytes,
    transient: Mapping[str, bytes] | None = None,
) -> Response:
    """Run the chaincode once; a refusal raises ChaincodeRejected, a crash EndorsementFailed."""
    stub = SimulationStub(reader, proposal, transient)
    try:
        payload = chaincode(stub, proposal.fn, list(proposal.args))
    except ChaincodeError as exc:
        raise ChaincodeRejected(exc) from exc
    except sqlite3.Error:
        raise  # the ledger's storage failed, not the chaincode
    except Exception as exc:
        raise EndorsementFailed(f"chaincode failed on {proposal.fn}: {type(exc).__name__}: {exc}") from exc
    finally:
        stub.finish()
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, bytes | bytearray):
        raise EndorsementFailed(f"chaincode returned {type(payload).__name__}, not bytes")
    return Response(sha256(proposal_bytes), 200, bytes(payload), stub.event, stub.rwset)


def key_policies(rwset: RWSet, policy_of: PolicyOf) -> dict[str, tuple[str, ...]]:
    """Committed key-level policies of the keys this transaction writes."""
    out: dict[str, tuple[str, ...]] = {}
    for key in rwset.written_keys():
        policy = policy_of(key)
        if policy:
            out[key] = tuple(policy)
    return out


def needs_chaincode_policy(rwset: RWSet, policies: Mapping[str, Sequence[str]]) -> bool:
    written = rwset.written_keys()
    return not written or any(k not in policies for k in written)


def required_orgs(
    submitter: str, chaincode_orgs: Sequence[str], rwset: RWSet, policy_of: PolicyOf, available: Iterable[str]
) -> list[str]:
    """Orgs whose peers the embedded gateway asks to endorse, submitter's org first when it can endorse."""
    policies = key_policies(rwset, policy_of)
    orgs: list[str] = []
    if needs_chaincode_policy(rwset, policies):
        avail = set(available)
        if submitter in chaincode_orgs:
            orgs.append(submitter)
        else:
            choice = next((o for o in chaincode_orgs if o in avail), None)
            if choice is None:
                raise EndorsementFailed("no org of the chaincode policy can endorse")
            orgs.append(choice)
    elif submitter in chaincode_orgs or any(submitter in p for p in policies.values()):
        orgs.append(submitter)
    for policy in policies.values():
        for org in policy:
            if org not in orgs:
                orgs.append(org)
    return orgs


def policy_satisfied(
    endorsers: set[str], rwset: RWSet, policy_of: PolicyOf, chaincode_orgs: Sequence[str]
) -> tuple[bool, str]:
    """(ok, reason) for a set of orgs whose valid endorsements a transaction carries."""
    policies = key_policies(rwset, policy_of)
    if needs_chaincode_policy(rwset, policies) and not endorsers.intersection(chaincode_orgs):
        return False, f"chaincode policy needs one of {sorted(chaincode_orgs)}, got {sorted(endorsers)}"
    for key, orgs in policies.items():
        missing = [o for o in orgs if o not in endorsers]
        if missing:
            return False, f"key {key!r} needs {list(orgs)}, missing {missing}"
    return True, ""
