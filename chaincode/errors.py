"""Refusals the contract can make, each with a stable code.

A refusal travels from the chaincode to the hub as the message of a failed chaincode response:
`{"code": ..., "message": ..., **details}` in canonical JSON, with response status 400 (business rule),
403 (wrong org), 404 (unknown id), 409 (conflict with what is recorded) or 503 (the endorser will not
endorse now: `tx_timestamp_skew`, its clock and the proposal's timestamp disagree, ADR 0027). Both
ledgers carry that message unchanged, so the hub maps the same code to the same problem+json answer on either.
"""

from __future__ import annotations

import json
from typing import Any

# Stable error codes and the status they travel with. Adding a code is fine; renaming one is an API change.
ERROR_STATUS: dict[str, int] = {
    "invalid_argument": 400,
    "unknown_function": 400,
    "bad_public_key": 400,
    "invalid_plan": 400,
    "bad_signature": 400,
    "unknown_metric": 400,
    "invalid_quantity": 400,
    "invalid_timestamp": 400,
    "timestamp_outside_contract": 400,
    "timestamp_in_future": 400,
    "missing_unit_price": 400,
    "mixed_contracts": 400,  # one RecordUsage transaction holds messages of several contracts (ADR 0028)
    "invalid_period": 400,
    "period_not_ended": 409,
    "period_closed": 409,
    "duplicate_reading": 409,
    "reading_conflict": 409,
    "asset_exists": 409,
    "asset_in_use": 409,
    "contract_exists": 409,
    "contract_not_active": 409,
    "invalid_state_transition": 409,
    "posting_conflict": 409,
    "payment_conflict": 409,
    "overpayment": 409,
    # prepaid drawdown, refunds and progressive billing (ADR 0051)
    "invalid_terms": 400,
    "unknown_top_up": 404,
    "contract_not_ended": 409,
    "nothing_to_refund": 409,
    "interim_not_due": 409,
    "prepaid_negative": 500,
    "payment_already_reversed": 409,
    "unknown_payment": 404,
    "message_conflict": 409,
    "forbidden": 403,
    "unknown_asset": 404,
    "unknown_contract": 404,
    "unknown_invoice": 404,
    "unknown_message": 404,
    # amendments (chaincode.tx.amendments, ADR 0046)
    "unknown_amendment": 404,
    "amendment_exists": 409,
    "amendment_pending": 409,
    "amendment_overlaps": 409,
    "amendment_in_past": 409,
    "amendment_outside_term": 400,
    "amendment_changes_fixed_terms": 400,
    # the proposal's timestamp is too far from the endorsing peer's clock (chaincode.clock, ADR 0027): the
    # request is fine, the clocks of the submitting client and the peer disagree; retry once they agree
    "tx_timestamp_skew": 503,
    # late readings and shared assets (ADRs 0048, 0049)
    "reading_too_late": 409,
    "no_booking": 409,
    "booking_mismatch": 400,
    "booking_overlap": 409,
    "booking_outside_contract": 400,
    "booking_exists": 409,
    "unknown_booking": 404,
    "asset_not_shared": 409,
}


class ChaincodeError(Exception):
    """A refusal: the transaction fails and writes nothing."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes: details are keyword arguments
        return _rebuild, (type(self), self.code, self.message, self.details)

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_json(self) -> str:
        body = {"code": self.code, "message": self.message, **self.details}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ChaincodeError | None:
        """Parse a chaincode error message; None when it is not one of ours (e.g. a peer error)."""
        try:
            body = json.loads(text)
        except (ValueError, TypeError):
            return None
        if not isinstance(body, dict) or body.get("code") not in ERROR_STATUS:
            return None
        code = body.pop("code")
        message = str(body.pop("message", code))
        return cls(code, message, **body)

    def __repr__(self) -> str:
        return f"ChaincodeError({self.code!r}, {self.message!r})"


def _rebuild(cls: type[ChaincodeError], code: str, message: str, details: dict[str, Any]) -> ChaincodeError:
    return cls(code, message, **details)
