"""Oracle Fusion REST connector against the emulator over real HTTP.

The emulator is shaped by the real Singer schemas and example requests in ../shared/erp/oracle, so the
payloads the connector builds are checked against Oracle's own field names and types.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from chaincode import creditor_ref
from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    InvoiceDocument,
    Party,
    RetryableError,
    UnclearOutcome,
    registry,
)
from connectors.emulators.faults import ALL_FAULTS, FaultPlan
from connectors.emulators.oracle_rest import ITEM_MEDIA_TYPE, OracleRestEmulator
from connectors.oracle_rest import OracleRestConnector, ar_transaction_number
from tests.helpers.erp import (
    StatusServer,
    check_emulator_controls,
    sample_delivery,
    sample_document,
    sample_invoice,
    track,
)

pytestmark = pytest.mark.integration

SELLER = Party(org="ProviderMSP", name="MedLease GmbH", erp_ids={"oracle_supplier": "MedLease GmbH"})
BUYER = Party(org="CustomerMSP", name="Klinikum Mitte", erp_ids={"oracle_customer_number": "1008"})
invoice = sample_invoice


def doc(n: int = 1) -> InvoiceDocument:
    return sample_document(SELLER, BUYER, n)


def delivery(target: str, n: int = 1, attempt: int = 1) -> Delivery:
    return sample_delivery(target, n, attempt)


@pytest.fixture
def emulator(shared_erp: Path):
    with OracleRestEmulator(shared_dir=shared_erp / "oracle") as em:
        assert em.shaped_by_real_schemas
        yield em


def connector(em: OracleRestEmulator, target: str, **settings) -> OracleRestConnector:
    base = {
        "base_url": em.base_url,
        "auth": {"type": "basic", "username": "integration", "password": "secret"},
        "business_unit": "Vision Operations",
        "timeout": 2,
    }
    conn = OracleRestConnector(ConnectorConfig("oracle-rest", target, {**base, **settings}))  # type: ignore[arg-type]
    track(conn)
    return conn


def test_oracle_example_requests_are_accepted_by_the_emulator(
    emulator: OracleRestEmulator, shared_erp: Path
) -> None:
    """The emulator accepts what Oracle's documentation posts, so its checks are not stricter than Oracle."""
    auth = ("integration", "secret")
    headers = {"Content-Type": ITEM_MEDIA_TYPE}
    for resource, name in [
        ("receivablesInvoices", "fusion-receivablesInvoices.create-with-lines.request.json"),
        ("invoices", "fusion-payables-invoices.create-po-matched-and-freight.request.json"),
    ]:
        body = json.loads((shared_erp / "oracle" / name).read_text())
        r = httpx.post(
            f"{emulator.base_url}/fscmRestApi/resources/11.13.18.05/{resource}",
            json=body,
            auth=auth,
            headers=headers,
        )
        assert r.status_code == 201, r.text


def test_payloads_use_only_real_field_names_and_types(emulator: OracleRestEmulator, shared_erp: Path) -> None:
    for target, schema in [
        ("provider", "fusion-receivablesInvoices.singer-schema.json"),
        ("customer", "fusion-payables-invoices.singer-schema.json"),
    ]:
        conn = connector(emulator, target)
        payload = conn._receivable(doc()) if target == "provider" else conn._payable(doc())
        fields = set(json.loads((shared_erp / "oracle" / schema).read_text())["properties"])
        extra = set(payload) - fields
        # child collections and create-only attributes are documented on the create operation
        assert extra <= {"receivablesInvoiceLines", "invoiceLines", "CrossReference", "Comments"}, extra
        emulator.validate(conn.resource, payload)  # raises on a wrong type
        # the invoice's ISO 11649 reference in the field each resource has for it
        field = "StructuredPaymentReference" if target == "provider" else "UniqueRemittanceIdentifier"
        assert field in fields and payload[field] == creditor_ref.for_invoice(doc().invoice_id)


def test_receivable_posted_once_and_read_back(emulator: OracleRestEmulator) -> None:
    conn = connector(emulator, "provider")
    ref = conn.deliver(doc(), delivery("provider"))
    (item,) = emulator.postings("receivablesInvoices")
    assert item["TransactionNumber"] == ar_transaction_number(invoice()["id"])
    assert len(item["TransactionNumber"]) <= 20
    assert item["CrossReference"] == invoice()["id"]
    assert Decimal(item["EnteredAmount"]) == Decimal("13655.25")  # lines + manual tax line = ledger total
    # a second delivery (e.g. after a crash before the outcome was stored) finds it instead of posting again
    again = conn.deliver(doc(), delivery("provider"))
    assert again == ref and emulator.state.creates == 1
    assert conn.status(ref).state == "open"
    emulator.pay("receivablesInvoices", int(ref.document_id), Decimal("5000.00"))
    status = conn.status(ref)
    assert (status.state, status.paid_amount) == ("partially_paid", Decimal("5000.00"))
    emulator.pay("receivablesInvoices", int(ref.document_id), Decimal("8655.25"))
    assert conn.status(ref).state == "paid"


def test_payable_upsert_and_status(emulator: OracleRestEmulator) -> None:
    conn = connector(emulator, "customer")
    ref = conn.deliver(doc(), delivery("customer"))
    assert conn.deliver(doc(), delivery("customer")) == ref  # Upsert-Mode: no second invoice
    # the resend was answered as an update because it said Upsert-Mode (not by the duplicate→lookup fallback)
    assert (emulator.state.creates, emulator.state.upserts) == (1, 1)
    (item,) = emulator.postings("invoices")
    assert Decimal(item["InvoiceAmount"]) == Decimal("13655.25")
    assert conn.lookup(doc(), delivery("customer")) == ref
    emulator.pay("invoices", int(ref.document_id), Decimal("13655.25"))
    assert conn.status(ref).state == "paid"
    emulator.cancel("invoices", int(ref.document_id))
    assert conn.status(ref).state == "cancelled"


def test_business_rejection_carries_oracle_message(emulator: OracleRestEmulator) -> None:
    conn = connector(emulator, "customer")
    bad = sample_document(SELLER, BUYER, total="1.00")
    with pytest.raises(BusinessRejection) as info:
        conn.deliver(bad, delivery("customer"))
    assert any("AP_LINE_VARIANCE" in m for m in info.value.erp_messages)
    assert emulator.postings() == []


def test_missing_customer_number_is_a_configuration_error(emulator: OracleRestEmulator) -> None:
    conn = connector(emulator, "provider")
    nobody = sample_document(SELLER, Party("X", "X"))
    with pytest.raises(ConnectorConfigError):
        conn.deliver(nobody, delivery("provider"))


def test_auth_modes(emulator: OracleRestEmulator) -> None:
    oauth = {
        "type": "oauth",
        "token_url": emulator.base_url + "/oauth2/v1/token",
        "client_id": "ledgerhub",
        "client_secret": "s3cret",
    }
    conn = connector(emulator, "customer", auth=oauth)
    assert conn.deliver(doc(1), delivery("customer", 1))
    # the same connector (its cached token) after the token was revoked server-side: one refresh on 401
    emulator.tokens.clear()
    assert conn.lookup(doc(1), delivery("customer", 1)) is not None
    assert len(emulator.tokens) == 1
    emulator.static_tokens.add("eyJhbGciOiJSUzI1NiJ9.jwt-issued-to-integration-user.sig")
    bearer = {"type": "bearer", "token": "eyJhbGciOiJSUzI1NiJ9.jwt-issued-to-integration-user.sig"}
    assert connector(emulator, "customer", auth=bearer).deliver(doc(2), delivery("customer", 2))
    wrong = {"type": "basic", "username": "integration", "password": "nope"}
    with pytest.raises(ConnectorConfigError):
        connector(emulator, "customer", auth=wrong).deliver(doc(3), delivery("customer", 3))
    assert {p["InvoiceNumber"] for p in emulator.postings()} == {invoice(1)["id"], invoice(2)["id"]}


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "basic", "username": "integration"},
        {"type": "bearer"},
        {"type": "oauth", "token_url": "http://127.0.0.1:9/t", "client_id": "x"},
        {"type": "kerberos"},
    ],
    ids=["basic-no-password", "bearer-no-token", "oauth-no-secret", "unknown-type"],
)
def test_incomplete_auth_settings_are_refused_when_the_connector_is_made(
    emulator: OracleRestEmulator, auth: dict[str, str]
) -> None:
    with pytest.raises(ConnectorConfigError):
        connector(emulator, "customer", auth=auth)


def test_collection_paging_follows_has_more(emulator: OracleRestEmulator) -> None:
    conn = connector(emulator, "customer")
    for n in range(60):
        conn.deliver(doc(n), delivery("customer", n))
    items = list(conn._collection({"q": "Supplier=MedLease GmbH"}))
    assert len(items) == 60 and len({i["InvoiceId"] for i in items}) == 60
    assert conn.lookup(doc(59), delivery("customer", 59)) is not None


def test_registered_as_entry_point() -> None:
    assert registry.factory("oracle-rest") is OracleRestConnector


@pytest.mark.faults
@pytest.mark.parametrize("target", ["provider", "customer"])
def test_exactly_once_under_faults(emulator: OracleRestEmulator, target: str) -> None:
    """200 invoices, 30% faults of every kind: each lands exactly once or is dead-lettered with its message.
    The retry loop is the dispatcher's rule: after an unclear outcome, look up before sending again."""
    emulator.faults.configure(
        FaultPlan(probability=0.3, kinds=ALL_FAULTS, seed=7, hang_seconds=0.6, slow_seconds=0.02)
    )
    conn = connector(emulator, target, timeout=0.3)
    delivered, dead = {}, {}
    for n in range(200):
        attempt = 1
        while True:
            try:
                delivered[n] = conn.deliver(doc(n), delivery(target, n, attempt))
                break
            except (UnclearOutcome, RetryableError):
                attempt += 1
                assert attempt < 20
            except BusinessRejection as exc:
                dead[n] = exc.erp_messages
                break
    injected = emulator.faults.snapshot()["injected"]
    assert set(injected) == set(ALL_FAULTS), injected  # every kind happened
    assert dead and all(msgs for msgs in dead.values())
    resource = "receivablesInvoices" if target == "provider" else "invoices"
    numbers = [
        p["CrossReference" if target == "provider" else "InvoiceNumber"] for p in emulator.postings(resource)
    ]
    assert len(numbers) == len(set(numbers)) == len(delivered) == 200 - len(dead)
    assert set(numbers) == {invoice(n)["id"] for n in delivered}
    assert emulator.state.creates == len(delivered)


def test_emulator_control_endpoints(emulator) -> None:
    def post_one() -> None:
        connector(emulator, "customer").deliver(doc(1), delivery("customer", 1))

    check_emulator_controls(emulator.base_url, post_one, emulator.postings)


def test_credentials_stay_out_of_reprs(emulator) -> None:
    oauth = {
        "type": "oauth",
        "token_url": emulator.base_url + "/oauth2/v1/token",
        "client_id": "ledgerhub",
        "client_secret": "s3cret",
    }
    conn = connector(emulator, "customer", auth=oauth)
    config = ConnectorConfig("oracle-rest", "customer", conn.settings)  # type: ignore[arg-type]
    for text in (repr(config), str(config), repr(conn), f"{config}"):
        assert "s3cret" not in text, text
    assert "auth" in repr(config) and "oracle-rest" in repr(config)


@pytest.mark.parametrize(
    ("status", "error"), [(503, RetryableError), (429, RetryableError), (401, ConnectorConfigError)]
)
def test_token_service_failure_is_retryable_only_when_it_is_down(
    emulator: OracleRestEmulator, status: int, error: type[Exception]
) -> None:
    with StatusServer(status) as idp:
        oauth = {
            "type": "oauth",
            "token_url": idp.base_url + "/token",
            "client_id": "ledgerhub",
            "client_secret": "s3cret",
        }
        conn = connector(emulator, "customer", auth=oauth)
        with pytest.raises(error) as info:
            conn.deliver(doc(71), delivery("customer", 71))
    assert not isinstance(info.value, UnclearOutcome)  # nothing was sent
    assert emulator.postings() == []
