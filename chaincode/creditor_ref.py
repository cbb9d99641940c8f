"""ISO 11649 structured creditor references (`RF` + two check digits + up to 21 characters).

Every invoice gets one, derived from its id alone, so the ledger, the hub, the e-invoice, the ERP postings and
the bank statement all name the same invoice without a lookup table anyone must keep in step: the body is
the first 21 base-36 digits of SHA-256(invoice id). Invoice ids are longer than 21 characters and contain
hyphens, which a reference may not; a digest keeps the reference short, fixed-length and collision-free in
practice (≈ 108 bits).

Check digits as ISO 7064 MOD 97-10, the same arithmetic as IBAN: move `RF` and the check digits to the end,
replace letters by numbers (A = 10 … Z = 35), and the number mod 97 must be 1.
Pure and deterministic: safe for the chaincode, the connectors and the hub to share.
"""

from __future__ import annotations

import hashlib
import string

PREFIX = "RF"
MAX_BODY = 21
_ALPHABET = string.digits + string.ascii_uppercase
_ALLOWED = frozenset(_ALPHABET)


class InvalidReference(ValueError):
    """Not an ISO 11649 reference (shape or check digits); `code` is the stable error code."""

    code = "invalid_creditor_reference"


def _numeric(text: str) -> int:
    return int("".join(str(_ALPHABET.index(ch)) for ch in text))


def check_digits(body: str) -> str:
    """The two check digits for a reference body (1-21 characters, 0-9 and A-Z)."""
    body = body.upper()
    if not 1 <= len(body) <= MAX_BODY or not set(body) <= _ALLOWED:
        raise InvalidReference(f"a creditor reference body is 1-21 characters of 0-9 and A-Z, not {body!r}")
    return f"{98 - _numeric(body + PREFIX + '00') % 97:02d}"


def make(body: str) -> str:
    """`RF` + check digits + body."""
    return PREFIX + check_digits(body) + body.upper()


def normalise(reference: str) -> str:
    """The reference without spaces, upper case, if it is a valid ISO 11649 reference; else
    `InvalidReference`."""
    if not isinstance(reference, str):
        raise InvalidReference("a creditor reference is a string")
    text = "".join(reference.split()).upper()
    if len(text) < 5 or len(text) > 4 + MAX_BODY or not text.startswith(PREFIX):
        raise InvalidReference(f"{reference!r} is not an RF creditor reference "
                               "(RF, 2 check digits, 1-21 characters)")
    digits, body = text[2:4], text[4:]
    if not digits.isdigit() or not set(body) <= _ALLOWED:
        raise InvalidReference(f"{reference!r} has characters an RF creditor reference cannot hold")
    if _numeric(body + text[:4]) % 97 != 1:
        raise InvalidReference(f"{reference!r} has wrong check digits")
    return text


def is_valid(reference: str) -> bool:
    try:
        normalise(reference)
    except InvalidReference:
        return False
    return True


def for_invoice(invoice_id: str) -> str:
    """The invoice's creditor reference: deterministic, 25 characters."""
    number = int.from_bytes(hashlib.sha256(invoice_id.encode("utf-8")).digest(), "big")
    body = []
    for _ in range(MAX_BODY):
        number, digit = divmod(number, 36)
        body.append(_ALPHABET[digit])
    return make("".join(body))


def for_top_up(contract_id: str) -> str:
    """The reference a customer quotes to fund a contract's prepaid balance (never an invoice's: the
    digest input carries a prefix no invoice id has)."""
    return for_invoice(f"top-up:{contract_id}")


def printed(reference: str) -> str:
    """Groups of four, as printed on paper invoices (`RF18 5390 0754 7034`)."""
    text = normalise(reference)
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))
