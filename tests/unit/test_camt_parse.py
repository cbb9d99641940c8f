"""The camt parser on its own: where the RF reference is found and what an entry's key is."""

from __future__ import annotations

import pytest

from chaincode import creditor_ref
from hub.bank import camt as parser
from tests.helpers.camt import IBAN, E, camt

pytestmark = pytest.mark.unit


def test_reference_in_free_text_followed_by_words() -> None:
    rf = creditor_ref.make("539007547034")
    text = f"Invoice {creditor_ref.printed(rf)} THANKS"
    (entry,) = parser.parse(camt([E("B-1", "1.00", ustrd=text)])).entries
    assert entry.reference == rf and entry.key == f"{IBAN}:B-1"


def test_quoted_but_wrong_reference_is_kept_for_the_operator() -> None:
    (entry,) = parser.parse(camt([E("B-1", "1.00", rf="RF19539007547034")])).entries
    assert entry.reference is None and entry.quoted_reference == "RF19539007547034"


@pytest.mark.parametrize("version", ["02", "08"])
def test_both_layouts_read_the_same(version: str) -> None:
    e = E("B-1", "12.30", rf=creditor_ref.make("ABC"), debtor="Klinikum Mitte", e2e="E2E", reason="AM04",
          reversal=True, credit=False)
    (entry,) = parser.parse(camt([e], version=version)).entries
    assert (entry.text_amount, entry.debtor_name, entry.end_to_end_id, entry.return_reason, entry.reversal,
            entry.credit) == ("12.30", "Klinikum Mitte", "E2E", "AM04", True, False)


def test_the_same_entry_twice_in_one_file_counts_once() -> None:
    statement = parser.parse(camt([E("B-1", "1.00"), E("B-1", "1.00")]))
    assert len(statement.entries) == 1
    with pytest.raises(parser.StatementError) as refused:
        parser.parse(camt([E("B-1", "1.00"), E("B-1", "2.00")]))
    assert refused.value.code == "invalid_statement"


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(parser.StatementError) as refused:
        parser.parse(b"<x>" + b" " * 200 + b"</x>", max_bytes=100)
    assert (refused.value.code, refused.value.status) == ("statement_too_large", 413)
