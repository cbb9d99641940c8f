"""invoke(): dispatch, argument parsing, canonical answers."""

from __future__ import annotations

import json

import pytest

from chaincode.contract import FUNCTIONS, QUERIES, TRANSACTIONS
from chaincode.model import canonical, parse_argument
from tests.helpers.chaincode import PROVIDER, ChaincodeLedger, make_device_key, sample_asset

pytestmark = pytest.mark.unit


def test_unknown_function_is_refused() -> None:
    ledger = ChaincodeLedger()
    err = ledger.refuse("DropTables", {}, "unknown_function")
    assert err.details["function"] == "DropTables"


def test_function_table_matches_the_documented_interface() -> None:
    assert set(TRANSACTIONS) == {
        "RegisterAsset",
        "ProposeContract",
        "AcceptContract",
        "RecordUsage",
        "CloseBillingPeriod",
        "RecordErpPosting",
        "RecordPayment",
        "ReversePayment",
        "TopUpPrepaid",
        "ReverseTopUp",
        "RefundPrepaid",
        "IssueInterimInvoice",
        "Dispute",
        "IssueCreditNote",
        "ProposeAmendment",
        "AcceptAmendment",
        "RejectAmendment",
        "ProposeBooking",
        "AcceptBooking",
    }
    assert set(QUERIES) == {
        "GetAsset",
        "GetContract",
        "GetInvoice",
        "GetPrepaid",
        "GetRunning",
        "ListInvoices",
        "GetPeriod",
        "GetUsage",
        "GetReadings",
        "GetUsageMessage",
        "GetAmendment",
        "GetContractHistory",
        "PreviewInvoice",
        "GetBooking",
        "ListBookings",
        "ListContracts",
        "GetLateReadings",
    }
    assert set(FUNCTIONS) == set(TRANSACTIONS) | set(QUERIES)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["{}", "{}"],
        ["not json"],
        [b"\xff\xfe"],
        ['["a list"]'],
        ['"a string"'],
        ['{"id": "a", "id": "b"}'],  # duplicate keys could make a signed message mean two things
        ['{"id": NaN}'],
    ],
)
def test_malformed_arguments_are_invalid_argument(args: list) -> None:
    ledger = ChaincodeLedger()
    ledger.refuse("RegisterAsset", None, "invalid_argument", args=args)


def test_bytes_and_str_arguments_are_equivalent() -> None:
    key = make_device_key()
    body = json.dumps(sample_asset(key))
    a, b = ChaincodeLedger(), ChaincodeLedger()
    assert a.submit_raw("RegisterAsset", [body], org=PROVIDER) == b.submit_raw(
        "RegisterAsset", [body.encode()], org=PROVIDER
    )


def test_answers_are_canonical_json() -> None:
    ledger = ChaincodeLedger()
    out = ledger.submit_raw("RegisterAsset", [json.dumps(sample_asset(make_device_key()))])
    assert out == canonical(json.loads(out))


def test_parse_argument_requires_an_object() -> None:
    assert parse_argument(['{"a": 1}']) == {"a": 1}


def test_every_error_code_is_exercised_by_a_contract_test() -> None:
    """Guard: each stable code in ERROR_STATUS appears in some chaincode test (as `"code"` text)."""
    from pathlib import Path

    from chaincode.errors import ERROR_STATUS

    here = Path(__file__).parent
    text = "".join(p.read_text() for p in here.glob("test_contract_*.py"))
    missing = [code for code in ERROR_STATUS if f'"{code}"' not in text]
    assert missing == []
