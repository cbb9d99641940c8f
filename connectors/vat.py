"""VAT identifiers in party master data, checked with `python-stdnum` (format and check digits) before an
e-invoice or a SEPA mandate uses them (ADR 0050).

A VAT id is written with its country prefix (`DE123456788`, `EL...` for Greece, `XI...` for Northern
Ireland). EU prefixes are checked by `stdnum.eu.vat`; any other prefix by the country's own `vat` module in
stdnum (`GB`, `CH`, `NO`, ...). A prefix stdnum has no checker for is refused as well: a number nobody can
check is not put on a document a receiver's validator checks. A wrong id is `party_data_invalid` (409 at
the API); nothing is produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import ConnectorConfigError


class PartyDataInvalid(ConnectorConfigError):
    """A party's master data holds a value that fails its check (a VAT id with a wrong check digit)."""

    code = "party_data_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("party master data invalid: " + "; ".join(problems))
        self.problems = problems


def vat_id_problem(vat_id: str) -> str | None:
    """Why `vat_id` is not a valid VAT identifier, or None when it is."""
    from stdnum import util
    from stdnum.eu import vat as eu_vat
    from stdnum.exceptions import ValidationError

    text = str(vat_id).strip()
    if len(text) < 4 or not text[:2].isalpha():
        return "a VAT id starts with its two-letter country prefix"
    prefix = text[:2].upper()
    try:
        if prefix in eu_vat.MEMBER_STATES or prefix in ("EL", "XI"):
            eu_vat.validate(text)
            return None
        module = util.get_cc_module(prefix.lower(), "vat")
        if module is None:
            return f"no VAT id check is known for country prefix {prefix}"
        module.validate(text)  # the country modules strip their own prefix
    except ValidationError as exc:
        return str(exc)
    return None


def party_problems(org: str, party: Any) -> list[str]:
    """The checks of one party's master data (a `connectors.base.Party` or a settings mapping)."""
    vat_id = party.get("vat_id") if isinstance(party, Mapping) else getattr(party, "vat_id", None)
    if not vat_id:
        return []
    problem = vat_id_problem(vat_id)
    return [f"parties.{org}.vat_id {vat_id!r}: {problem}"] if problem else []


def check_parties(parties: Iterable[tuple[str, Any]]) -> None:
    """`PartyDataInvalid` naming every invalid value of these (org, party) pairs; nothing when all pass."""
    problems = [p for org, party in parties for p in party_problems(org, party)]
    if problems:
        raise PartyDataInvalid(problems)
