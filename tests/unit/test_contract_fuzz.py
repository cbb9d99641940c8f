"""No input makes the contract crash: every function answers or refuses with a ChaincodeError."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode.contract import FUNCTIONS, invoke
from chaincode.errors import ChaincodeError
from chaincode.stub import InMemoryStub
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    example_usage,
    make_device_key,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
FIELDS = [
    "id", "contract_id", "period", "invoice_id", "device_id", "message_id", "messages", "readings",
    "target", "system", "document_id", "delivery_id", "payment_id", "amount", "paid_at", "reason", "status",
    "provider", "customer", "assets", "public_key", "description", "signature", "metric", "quantity",
    "timestamp", "unit_price", "currency", "timezone", "start", "end", "metrics", "charges", "tax", "erp",
]  # fmt: skip
PLAUSIBLE = [
    CONTRACT_ID, DEVICE_ID, f"inv-{CONTRACT_ID}-2026-11", "2026-11", "2026-12", "provider", "customer",
    PROVIDER, CUSTOMER, "1.00", "13655.25", "-1", "2026-11-03T09:15:00+01:00", "scan", "EUR", "",
]  # fmt: skip

_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(PLAUSIBLE)
)
_value = st.recursive(
    _leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), c, max_size=4),
    max_leaves=12,
)
_body = st.dictionaries(st.sampled_from(FIELDS), _value, max_size=6)


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY)
    ledger.submit("RecordUsage", {"messages": example_usage(KEY)})
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, at=NOV_END)
    return ledger.world


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fn=st.sampled_from(sorted(FUNCTIONS)), body=_body, org=st.sampled_from([PROVIDER, CUSTOMER, "X"]))
def test_random_arguments_never_crash(world, fn: str, body: dict, org: str) -> None:  # type: ignore[no-untyped-def]
    stub = InMemoryStub(world, tx_id="fuzz", timestamp=NOV_END + dt.timedelta(days=1), creator_msp_id=org)
    try:
        out = invoke(stub, fn, [json.dumps(body)])
    except ChaincodeError:
        return
    json.loads(out)
