"""Amendments: the provider proposes a new plan version (or an end date) for an active contract, the
customer accepts or rejects it (ADR 0046).

Keys: `amendment~{contract}~{id}` holds each amendment with its status (PROPOSED -> ACCEPTED | REJECTED);
its key-level policy needs provider AND customer from the proposal on, like the contract's. Accepting
writes the contract key (both orgs endorse): the contract record then carries

* `versions`: every plan version in order, `{"version", "effective_from" (null for version 1), "plan"
  (the pricing fields: charges, minimum_commitment, maximum), "amendment_id", "proposed_by",
  "accepted_by", "proposed_tx", "accepted_tx"}`, and its top-level pricing is the latest version's;
* `plan_version`: the latest version's number;
* after an end amendment, `end` (the agreed last day) and `ended_by: {"amendment_id", "end", "at"}`.

`accept_amendment` is the one place an amendment takes effect on the ledger (event `ContractAmended`), and
the hub's `hub.amendments.on_accepted` is the one place the hub learns of it.

Refusals (nothing written): `forbidden` (not the provider / not the customer), `unknown_contract`,
`unknown_amendment`, `contract_not_active`, `amendment_pending` (another amendment awaits an answer),
`amendment_exists` (the id is taken by other content), `amendment_in_past` (effective at or before the
transaction's time), `amendment_overlaps` (not after the latest accepted version's instant),
`amendment_outside_term` (at or after the contract's end), `amendment_changes_fixed_terms` (currency,
parties, assets, timezone, start, end, metrics, tax, erp or the metrics priced per reading),
`invalid_plan`, `invalid_argument`, `invalid_state_transition` (answering a settled amendment otherwise).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chaincode import keys, proration, rating
from chaincode.errors import ChaincodeError
from chaincode.model import ACTIVE, check_id, format_ts, optional_str, require_id
from chaincode.periods import local_midnight, parse_date
from chaincode.tx.common import Tx, parse_plan

PROPOSED, ACCEPTED, REJECTED = "PROPOSED", "ACCEPTED", "REJECTED"
_BODY_KEYS = {"contract_id", "id", "effective_from", "plan", "end", "note"}


def _effective_instant(tx: Tx, body: dict[str, Any], plan: rating.Plan) -> tuple[str, dt.datetime]:
    """(kind, instant): a plan amendment's `effective_from`, or an end amendment's first instant after
    its `end` day (local midnight in the contract's zone)."""
    has_plan, has_end = "plan" in body, "end" in body
    if has_plan == has_end:
        raise ChaincodeError(
            "invalid_argument", "an amendment has either plan (with effective_from) or end", field="plan"
        )
    if has_end:
        if "effective_from" in body:
            raise ChaincodeError(
                "invalid_argument", "an end amendment takes effect after its end day", field="effective_from"
            )
        try:
            day = parse_date(body["end"])
        except ValueError as exc:
            raise ChaincodeError("invalid_argument", "end must be a date YYYY-MM-DD", field="end") from exc
        return "end", local_midnight(day + dt.timedelta(days=1), plan.timezone)
    text = body.get("effective_from")
    try:
        if not isinstance(text, str):
            raise ValueError("effective_from must be an RFC 3339 instant")
        return "plan", rating.parse_timestamp(text)
    except ValueError as exc:
        raise ChaincodeError("invalid_argument", str(exc), field="effective_from") from exc


def _new_pricing(contract: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The version's pricing: the current pricing updated by the body's plan. A field outside the pricing
    may be repeated only with its current value."""
    new = body.get("plan")
    if not isinstance(new, dict) or not new:
        raise ChaincodeError("invalid_argument", "plan must be a non-empty object", field="plan")
    changed = sorted(k for k, v in new.items() if k not in proration.PRICING_KEYS and contract.get(k) != v)
    pricing = {**proration.pricing_of(contract), **{k: new[k] for k in proration.PRICING_KEYS if k in new}}
    if changed:
        raise ChaincodeError(
            "amendment_changes_fixed_terms",
            f"an amendment may change only {list(proration.PRICING_KEYS)}; it changes {changed}",
            fields=changed,
        )
    errors = rating.validate_plan({**contract, **pricing})
    if errors:
        raise ChaincodeError("invalid_plan", f"the plan has {len(errors)} error(s)", errors=errors)
    old, neu = parse_plan(contract), proration.version_plan(contract, pricing)
    if old.priced_metrics != neu.priced_metrics:
        raise ChaincodeError(
            "amendment_changes_fixed_terms",
            "an amendment cannot change which metrics are priced per reading (dynamic charges)",
            fields=["charges"],
        )
    return pricing


def _amendments(tx: Tx, contract_id: str) -> list[dict[str, Any]]:
    return [record for _, record in tx.scan(keys.AMENDMENT, [contract_id])]


def _latest_instant(contract: dict[str, Any]) -> dt.datetime | None:
    versions = contract.get("versions") or []
    instants = [rating.parse_timestamp(v["effective_from"]) for v in versions if v.get("effective_from")]
    return max(instants) if instants else None


def propose_amendment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ProposeAmendment {"contract_id", "id", "effective_from", "plan"} | {"contract_id", "id", "end"}` by
    the provider -> the amendment record (PROPOSED). The same proposal again returns it, writing nothing."""
    contract_id = require_id(body, "contract_id")
    amendment_id = require_id(body, "id")
    contract = tx.contract(contract_id)
    if tx.creator != contract["provider"]:
        raise ChaincodeError(
            "forbidden",
            f"only the provider {contract['provider']} may amend {contract_id}", msp_id=tx.creator
        )
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        raise ChaincodeError("invalid_argument", f"unknown fields {unknown}", fields=unknown)
    optional_str(body, "note")
    key = keys.amendment(contract_id, amendment_id)
    existing = tx.get(key)
    if existing is not None:
        if existing["request"] == body:
            return existing
        raise ChaincodeError(
            "amendment_exists", f"amendment {amendment_id} already exists", amendment_id=amendment_id
        )
    if contract["status"] != ACTIVE:
        raise ChaincodeError(
            "contract_not_active",
            f"contract {contract_id} is {contract['status']}", status=contract["status"]
        )
    pending = [a["id"] for a in _amendments(tx, contract_id) if a["status"] == PROPOSED]
    if pending:
        raise ChaincodeError(
            "amendment_pending",
            f"amendment {pending[0]} awaits the customer's answer", amendment_id=pending[0]
        )
    plan = parse_plan(contract)
    kind, instant = _effective_instant(tx, body, plan)
    pricing = _new_pricing(contract, body) if kind == "plan" else None
    _check_instant(tx, contract, plan, instant)
    record = {
        "id": amendment_id,
        "contract_id": contract_id,
        "kind": kind,
        "effective_from": format_ts(instant),
        "plan": pricing,
        "end": body.get("end"),
        "note": body.get("note"),
        "request": body,
        "status": PROPOSED,
        "proposed_by": tx.creator,
        "proposed_tx": tx.tx_id,
        "proposed_at": format_ts(tx.timestamp),
        "answered_by": None,
        "answered_tx": None,
        "answered_at": None,
        "version": None,
    }
    tx.put(key, record)
    tx.stub.set_key_endorsement(key, [contract["provider"], contract["customer"]])
    tx.event("AmendmentProposed", {"contract_id": contract_id, "amendment_id": amendment_id})
    return record


def _check_instant(tx: Tx, contract: dict[str, Any], plan: rating.Plan, instant: dt.datetime) -> None:
    if instant <= tx.timestamp:
        raise ChaincodeError(
            "amendment_in_past",
            f"an amendment takes effect after now ({format_ts(tx.timestamp)}), not at {format_ts(instant)}",
            effective_from=format_ts(instant),
        )
    latest = _latest_instant(contract)
    if latest is not None and instant <= latest:
        raise ChaincodeError(
            "amendment_overlaps",
            f"version {contract.get('plan_version')} takes effect at {format_ts(latest)}: an amendment "
            "takes effect after it",
            effective_from=format_ts(instant),
        )
    c_start, c_end = rating.contract_bounds(plan)
    if instant <= c_start or (c_end is not None and instant > c_end):
        raise ChaincodeError(
            "amendment_outside_term",
            f"{format_ts(instant)} is outside the contract's term",
            effective_from=format_ts(instant),
        )


def _pending(tx: Tx, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    contract_id = require_id(body, "contract_id")
    amendment_id = require_id(body, "amendment_id")
    contract = tx.contract(contract_id)
    if tx.creator != contract["customer"]:
        raise ChaincodeError(
            "forbidden", f"only the customer {contract['customer']} answers an amendment", msp_id=tx.creator
        )
    record = tx.get(keys.amendment(contract_id, amendment_id))
    if record is None:
        raise ChaincodeError(
            "unknown_amendment", f"no amendment {amendment_id} of {contract_id}", amendment_id=amendment_id
        )
    return contract, record, keys.amendment(contract_id, amendment_id)


def _answered(record: dict[str, Any], status: str, tx: Tx) -> dict[str, Any]:
    return {**record, "status": status, "answered_by": tx.creator, "answered_tx": tx.tx_id,
            "answered_at": format_ts(tx.timestamp)}


def accept_amendment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`AcceptAmendment {"contract_id", "amendment_id"}` by the customer -> the amendment (ACCEPTED) and the
    contract's new version. Accepting again returns it unchanged; an amendment whose instant has passed
    can no longer be accepted (`amendment_in_past`)."""
    contract, record, key = _pending(tx, body)
    if record["status"] == ACCEPTED:
        return record
    if record["status"] != PROPOSED:
        raise ChaincodeError(
            "invalid_state_transition",
            f"amendment {record['id']} is {record['status']}", status=record["status"]
        )
    if contract["status"] != ACTIVE:
        raise ChaincodeError(
            "contract_not_active",
            f"contract {contract['id']} is {contract['status']}", status=contract["status"]
        )
    plan = parse_plan(contract)
    instant = rating.parse_timestamp(record["effective_from"])
    _check_instant(tx, contract, plan, instant)
    versions = list(contract.get("versions") or [_first_version(contract)])
    updated = dict(contract)
    if record["kind"] == "plan":
        number = versions[-1]["version"] + 1
        versions.append({
            "version": number,
            "effective_from": record["effective_from"],
            "plan": record["plan"],
            "amendment_id": record["id"],
            "proposed_by": record["proposed_by"],
            "proposed_tx": record["proposed_tx"],
            "accepted_by": tx.creator,
            "accepted_tx": tx.tx_id,
        })
        updated.update(record["plan"])
        updated["plan_version"] = number
    else:
        number = versions[-1]["version"]
        updated["end"] = record["end"]
        updated["ended_by"] = {
            "amendment_id": record["id"], "end": record["end"], "at": record["effective_from"],
            "accepted_tx": tx.tx_id}
        updated.setdefault("plan_version", number)
    updated["versions"] = versions
    accepted = {**_answered(record, ACCEPTED, tx), "version": number}
    tx.put(key, accepted)
    tx.put(keys.contract(contract["id"]), updated)
    tx.event("ContractAmended", {
        "contract_id": contract["id"], "amendment_id": record["id"], "kind": record["kind"],
        "version": number, "effective_from": record["effective_from"],
    })
    return accepted


def _first_version(contract: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "effective_from": None,
        "plan": proration.pricing_of(contract),
        "amendment_id": None,
        "proposed_by": contract["provider"],
        "proposed_tx": contract.get("proposed_tx"),
        "accepted_by": contract["customer"],
        "accepted_tx": contract.get("accepted_tx"),
    }


def reject_amendment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`RejectAmendment {"contract_id", "amendment_id", "reason"?}` by the customer -> REJECTED; the
    contract is untouched. Rejecting again returns it unchanged."""
    contract, record, key = _pending(tx, body)
    reason = optional_str(body, "reason")
    if record["status"] == REJECTED:
        return record
    if record["status"] != PROPOSED:
        raise ChaincodeError(
            "invalid_state_transition",
            f"amendment {record['id']} is {record['status']}", status=record["status"]
        )
    rejected = {**_answered(record, REJECTED, tx), "reason": reason}
    tx.put(key, rejected)
    tx.event("AmendmentRejected", {"contract_id": contract["id"], "amendment_id": record["id"]})
    return rejected


def get_amendment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    contract_id = require_id(body, "contract_id")
    amendment_id = check_id(body.get("amendment_id"), "amendment_id")
    tx.contract(contract_id)
    record = tx.get(keys.amendment(contract_id, amendment_id))
    if record is None:
        raise ChaincodeError(
            "unknown_amendment", f"no amendment {amendment_id} of {contract_id}", amendment_id=amendment_id
        )
    return record


def get_contract_history(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetContractHistory {"contract_id"}` -> `{"contract_id", "status", "plan_version", "versions",
    "amendments", "ended_by"}`: every version with who proposed and accepted it (tx ids), and every
    amendment in key order with its answer."""
    contract = tx.contract(require_id(body, "contract_id"))
    versions = contract.get("versions") or [_first_version(contract)]
    return {
        "contract_id": contract["id"],
        "status": contract["status"],
        "plan_version": contract.get("plan_version", 1),
        "versions": versions,
        "amendments": _amendments(tx, contract["id"]),
        "ended_by": contract.get("ended_by"),
    }
