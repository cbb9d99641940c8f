"""ISO 11649 creditor references: the standard's example, an independent check, and properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode import creditor_ref as rf

pytestmark = pytest.mark.unit
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BODIES = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=21)


def _iso7064_ok(reference: str) -> bool:
    """Independent oracle: letters to numbers one by one, mod 97 digit by digit (no big integers)."""
    text = reference[4:] + reference[:4]
    remainder = 0
    for ch in text:
        for digit in str(int(ch, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder == 1


def test_the_standards_example() -> None:
    assert rf.make("539007547034") == "RF18539007547034"
    assert rf.normalise("rf18 5390 0754 7034") == "RF18539007547034"
    assert rf.printed("RF18539007547034") == "RF18 5390 0754 7034"


@pytest.mark.parametrize("bad", ["RF19539007547034", "RF18539007547035", "RF185390075470341234567890123",
                                 "XX18539007547034", "RF1", "RFAB539007547034", "RF18-5390", "", "RF00"])
def test_invalid_references_are_refused(bad: str) -> None:
    assert not rf.is_valid(bad)
    with pytest.raises(rf.InvalidReference) as info:
        rf.normalise(bad)
    assert info.value.code == "invalid_creditor_reference"


@pytest.mark.parametrize("bad", ["", "A" * 22, "AB-C", "ÄBC"])
def test_bodies_outside_the_alphabet_are_refused(bad: str) -> None:
    with pytest.raises(rf.InvalidReference):
        rf.make(bad)


def test_invoice_reference_is_fixed_and_distinct() -> None:
    first = rf.for_invoice("inv-ctr-mri-001-2026-10")
    assert first == rf.for_invoice("inv-ctr-mri-001-2026-10")
    assert first != rf.for_invoice("inv-ctr-mri-001-2026-11")
    assert len(first) == 25 and rf.is_valid(first)


@PROPS
@given(BODIES)
def test_made_references_validate_and_agree_with_the_oracle(body: str) -> None:
    reference = rf.make(body)
    assert rf.is_valid(reference)
    assert _iso7064_ok(reference)
    assert rf.normalise(rf.printed(reference).lower()) == reference


@PROPS
@given(BODIES, st.data())
def test_any_single_character_change_is_detected(body: str, data: st.DataObject) -> None:
    reference = rf.make(body)
    position = data.draw(st.integers(min_value=2, max_value=len(reference) - 1))
    # MOD 97-10 guarantees detection when a digit replaces a digit or a letter a letter (a letter becomes
    # two digits, so a letter for a digit shifts everything and is caught only with probability 96/97)
    same_kind = "0123456789" if reference[position].isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    replacement = data.draw(st.sampled_from(same_kind))
    changed = reference[:position] + replacement + reference[position + 1:]
    if changed != reference:
        assert not rf.is_valid(changed)
        assert not _iso7064_ok(changed) or not changed[2:4].isdigit()


@PROPS
@given(st.text(alphabet="0123456789", min_size=2, max_size=21))
def test_adjacent_transpositions_of_digits_are_detected(body: str) -> None:
    reference = rf.make(body)
    for i in range(4, len(reference) - 1):
        swapped = reference[:i] + reference[i + 1] + reference[i] + reference[i + 2:]
        if swapped != reference:
            assert not rf.is_valid(swapped), (reference, swapped)


@PROPS
@given(st.text(min_size=1, max_size=80))
def test_every_invoice_id_gets_a_valid_25_character_reference(invoice_id: str) -> None:
    reference = rf.for_invoice(invoice_id)
    assert len(reference) == 25
    assert rf.normalise(reference) == reference
    assert _iso7064_ok(reference)
