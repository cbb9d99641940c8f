"""`ContractClient` against the embedded ledger running the real billing chaincode (ADR 0061).

One module-scoped story calls every method the client has, on an embedded ledger endorsing with SoftHSM2
org keys; the tests then check each typed answer (values, Decimal money, the ids the chaincode assigns),
that a refusal is `ChaincodeRejected` with its code and writes nothing, and that every answer's keys are
exactly what the answer models describe (a key gained or lost by the chaincode fails here).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.billing import answers as a
from hub.billing.client import ContractClient, OrgMapping
from hub.ledger.base import ChaincodeRejected
from hub.ledger.embedded import EmbeddedLedger
from hub.services import Metrics
from tests.helpers.chaincode import (
    AUDITOR,
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    sample_asset,
    sample_contract,
)
from tests.helpers.embedded import Clock, contract_ledger

DEC_2 = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
P = "2026-11"


@dataclasses.dataclass
class Story:
    client: ContractClient
    ledger: EmbeddedLedger
    metrics: Metrics
    seen: dict[str, a.Answer]
    proposed: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    clock = Clock(MID_NOV)
    ledger = contract_ledger(Path(tmp_path_factory.mktemp("client")) / "ledger", clock)
    metrics = Metrics()
    client = ContractClient(ledger, orgs=OrgMapping(PROVIDER, CUSTOMER, AUDITOR), metrics=metrics)
    seen: dict[str, a.Answer] = {}
    s = Story(client, ledger, metrics, seen, {})

    # contract 1: prepaid, amended, closed (settled by the balance)
    key = make_device_key("client")
    seen["register_asset"] = client.register_asset(sample_asset(key), as_org=PROVIDER)
    s.proposed[CONTRACT_ID] = sample_contract(prepaid={"low_balance": "100.00"})
    seen["propose_contract"] = client.propose_contract(s.proposed[CONTRACT_ID], as_org=PROVIDER)
    seen["accept_contract"] = client.accept_contract(CONTRACT_ID, as_org=CUSTOMER)
    seen["top_up_prepaid"] = client.top_up_prepaid(CONTRACT_ID, top_up_id="t1", amount=Decimal("20000.00"),
                                                   source="bank:camt.054", as_org=PROVIDER)
    seen["record_usage"] = client.record_usage(example_usage(key, messages=2), as_org=PROVIDER)
    seen["record_usage_again"] = client.record_usage(example_usage(key, messages=2), as_org=PROVIDER)
    seen["get_asset"] = client.get_asset(DEVICE_ID, as_org=None)
    seen["get_contract"] = client.get_contract(CONTRACT_ID, as_org=CUSTOMER)
    seen["get_usage"] = client.get_usage(CONTRACT_ID, P, as_org=PROVIDER)
    seen["preview_invoice"] = client.preview_invoice(CONTRACT_ID, P, as_org=PROVIDER)
    seen["get_readings"] = client.get_readings(CONTRACT_ID, P, as_org=AUDITOR)
    seen["get_late_readings"] = client.get_late_readings(CONTRACT_ID, P, as_org=AUDITOR)
    seen["get_usage_message"] = client.get_usage_message(DEVICE_ID, "r-msg-0", as_org=AUDITOR)
    seen["get_period_open"] = client.get_period(CONTRACT_ID, P, as_org=PROVIDER)
    seen["get_prepaid"] = client.get_prepaid(CONTRACT_ID, as_org=PROVIDER)
    seen["propose_amendment"] = client.propose_amendment(CONTRACT_ID, "a1", end="2027-01-31",
                                                         note="early end", as_org=PROVIDER)
    seen["accept_amendment"] = client.accept_amendment(CONTRACT_ID, "a1", as_org=CUSTOMER)
    client.propose_amendment(CONTRACT_ID, "a2", end="2027-01-15", as_org=PROVIDER)
    seen["reject_amendment"] = client.reject_amendment(CONTRACT_ID, "a2", reason="no", as_org=CUSTOMER)
    seen["get_amendment"] = client.get_amendment(CONTRACT_ID, "a1", as_org=PROVIDER)
    seen["get_contract_history"] = client.get_contract_history(CONTRACT_ID, as_org=PROVIDER)
    clock.now = DEC_2
    seen["close_billing_period"] = client.close_billing_period(CONTRACT_ID, P, as_org=PROVIDER)
    seen["close_again"] = client.close_billing_period(CONTRACT_ID, P, as_org=CUSTOMER)
    seen["get_period_closed"] = client.get_period(CONTRACT_ID, P, as_org=PROVIDER)
    seen["list_invoices"] = client.list_invoices(contract_id=CONTRACT_ID, as_org=PROVIDER)
    seen["list_contracts"] = client.list_contracts(CUSTOMER, as_org=PROVIDER)
    seen["reverse_top_up"] = client.reverse_top_up(CONTRACT_ID, top_up_id="t1", reversal_id="rv-1",
                                                   reason="AC04", as_org=PROVIDER)

    # contract 2: progressive billing; the interim invoice is posted, paid, reversed, disputed, credited
    key2 = make_device_key("client-2")
    client.register_asset(sample_asset(key2, "dev-2"), as_org=PROVIDER)
    s.proposed["ctr-2"] = sample_contract(id="ctr-2", assets=["dev-2"], billing_threshold="1000.00")
    client.propose_contract(s.proposed["ctr-2"], as_org=PROVIDER)
    client.accept_contract("ctr-2", as_org=CUSTOMER)
    clock.now = MID_NOV
    client.record_usage(example_usage(key2, device_id="dev-2"), as_org=CUSTOMER)
    seen["get_running"] = client.get_running("ctr-2", as_org=PROVIDER)
    seen["get_running_period"] = client.get_running_period("ctr-2", P, as_org=PROVIDER)
    seen["issue_interim_invoice"] = client.issue_interim_invoice("ctr-2", P, as_org=PROVIDER)
    interim = seen["issue_interim_invoice"].id  # type: ignore[attr-defined]
    clock.now = DEC_2
    seen["close_after_interim"] = client.close_billing_period("ctr-2", P, as_org=PROVIDER)
    seen["record_erp_posting"] = client.record_erp_posting(interim, target="provider", system="sap-soap",
                                                           document_id="5100000001", delivery_id="d-1",
                                                           as_org=PROVIDER)
    seen["record_payment"] = client.record_payment(interim, payment_id="p-1", amount=Decimal("100.00"),
                                                   paid_at="2026-12-01T10:00:00Z", source="sap-soap",
                                                   as_org=PROVIDER)
    seen["reverse_payment"] = client.reverse_payment(interim, payment_id="p-1", reversal_id="rv-p1",
                                                     reason="AC04", as_org=PROVIDER)
    seen["dispute"] = client.dispute(interim, reason="wrong count", as_org=CUSTOMER)
    seen["issue_credit_note"] = client.issue_credit_note(interim, reason="agreed", amount=Decimal("5.00"),
                                                         as_org=PROVIDER)
    seen["get_invoice_credit_note"] = client.get_invoice(seen["issue_credit_note"].id,  # type: ignore[attr-defined]
                                                         as_org=AUDITOR)

    # contract 3: prepaid, ends with November: closed, then the balance left is refunded
    key3 = make_device_key("client-3")
    client.register_asset(sample_asset(key3, "dev-3"), as_org=PROVIDER)
    s.proposed["ctr-3"] = sample_contract(id="ctr-3", assets=["dev-3"], end="2026-11-30",
                                          prepaid={"low_balance": "10.00"})
    client.propose_contract(s.proposed["ctr-3"], as_org=PROVIDER)
    client.accept_contract("ctr-3", as_org=CUSTOMER)
    clock.now = MID_NOV
    client.top_up_prepaid("ctr-3", top_up_id="t3", amount="5000.00", as_org=CUSTOMER)
    clock.now = DEC_2
    client.close_billing_period("ctr-3", P, as_org=PROVIDER)
    seen["refund_prepaid"] = client.refund_prepaid("ctr-3", as_org=PROVIDER)

    # contract 4: a shared asset booked for a window
    key4 = make_device_key("client-4")
    seen["register_shared"] = client.register_asset({**sample_asset(key4, "shared-1"), "shared": True},
                                                    as_org=PROVIDER)
    s.proposed["ctr-4"] = sample_contract(id="ctr-4", assets=["shared-1"])
    client.propose_contract(s.proposed["ctr-4"], as_org=PROVIDER)
    client.accept_contract("ctr-4", as_org=CUSTOMER)
    seen["propose_booking"] = client.propose_booking("shared-1", "b-1", contract_id="ctr-4",
                                                     start="2026-12-10T00:00:00Z", end="2026-12-11T00:00:00Z",
                                                     as_org=PROVIDER)
    seen["accept_booking"] = client.accept_booking("shared-1", "b-1", as_org=CUSTOMER)
    seen["get_booking"] = client.get_booking("shared-1", "b-1", as_org=PROVIDER)
    seen["list_bookings"] = client.list_bookings("shared-1", as_org=PROVIDER)
    yield s
    ledger.close()


def test_contract_answers(story: Story) -> None:
    seen = story.seen
    asset = seen["register_asset"]
    assert isinstance(asset, a.Asset) and asset.id == DEVICE_ID and asset.provider == PROVIDER
    assert asset.commit is not None and asset.registered_tx == asset.commit.tx_id
    proposed, accepted = seen["propose_contract"], seen["accept_contract"]
    assert isinstance(proposed, a.Contract) and isinstance(accepted, a.Contract)
    assert (proposed.status, accepted.status) == ("PROPOSED", "ACTIVE")
    assert accepted.assets == (DEVICE_ID,) and accepted.reading_key_version == 2
    assert accepted.accepted_tx == accepted.commit.tx_id  # type: ignore[union-attr]
    assert accepted.raw["charges"] == story.proposed[CONTRACT_ID]["charges"]  # the proposal, kept whole
    got = seen["get_contract"]
    assert isinstance(got, a.Contract) and got.commit is None and got.status == "ACTIVE"
    assert asset.contract_id is None  # accepting the contract binds it
    bound = seen["get_asset"]
    assert isinstance(bound, a.Asset) and bound.contract_id == CONTRACT_ID
    assert bound.public_key == asset.public_key


def test_usage_answers(story: Story) -> None:
    recorded = story.seen["record_usage"]
    assert isinstance(recorded, a.UsageRecorded)
    assert recorded.accepted == 170 and recorded.tx_id == recorded.commit.tx_id  # type: ignore[union-attr]
    assert [r.status for r in recorded.results] == ["accepted", "accepted"]
    again = story.seen["record_usage_again"]
    assert isinstance(again, a.UsageRecorded) and again.accepted == 0
    # the same messages signed again (other signature bytes) under the same ids
    assert [(r.status, r.error_code) for r in again.results] == [("rejected", "message_conflict")] * 2
    usage = story.seen["get_usage"]
    assert isinstance(usage, a.Usage) and usage.status == "OPEN"
    assert (usage.cost.subtotal, usage.cost.tax, usage.cost.total) == (
        Decimal("11475.00"), Decimal("2180.25"), Decimal("13655.25"))
    assert usage.cost.tax_rate == Decimal("0.19") and usage.cost.readings == 170
    preview = story.seen["preview_invoice"]
    assert isinstance(preview, a.Preview) and preview.status == "OPEN"
    assert preview.invoice.total == Decimal("13655.25")
    assert preview.invoice.id == ContractClient.invoice_id(CONTRACT_ID, P)
    readings = story.seen["get_readings"]
    assert isinstance(readings, a.Readings) and len(readings.readings) == 170
    assert story.seen["get_late_readings"].readings == ()  # type: ignore[attr-defined]
    message = story.seen["get_usage_message"]
    assert isinstance(message, a.UsageMessage) and message.message_id == "r-msg-0"


def test_close_names_the_invoice_as_the_client_does(story: Story) -> None:
    invoice = story.seen["close_billing_period"]
    assert isinstance(invoice, a.Invoice)
    assert invoice.id == ContractClient.invoice_id(CONTRACT_ID, P) == f"inv-{CONTRACT_ID}-{P}"
    assert invoice.type == "invoice" and not invoice.is_credit_note
    assert (invoice.total, invoice.paid) == (Decimal("13655.25"), Decimal("13655.25"))
    assert invoice.status == "SETTLED" and invoice.settled_by == "prepaid"
    assert invoice.tx_id == invoice.commit.tx_id  # type: ignore[union-attr]
    again = story.seen["close_again"]
    assert again == invoice and again.commit.tx_id != invoice.tx_id  # type: ignore[union-attr]
    period = story.seen["get_period_closed"]
    assert isinstance(period, a.Period) and period.status == "CLOSED" and period.invoice_id == invoice.id
    assert story.seen["get_period_open"].invoice_id is None  # type: ignore[attr-defined]
    listed = story.seen["list_invoices"]
    assert isinstance(listed, a.InvoiceList) and [i.id for i in listed.invoices] == [invoice.id]
    contracts = story.seen["list_contracts"]
    assert isinstance(contracts, a.ContractList)
    assert [(c.id, c.status, c.provider, c.customer) for c in contracts.contracts] == [
        (CONTRACT_ID, "ACTIVE", PROVIDER, CUSTOMER)]


def test_settlement_answers(story: Story) -> None:
    seen = story.seen
    interim = seen["issue_interim_invoice"]
    assert isinstance(interim, a.Invoice) and interim.kind == "interim" and interim.sequence == 1
    assert interim.id == ContractClient.interim_invoice_id("ctr-2", P, 1)
    assert interim.total == Decimal("13655.25")
    final = seen["close_after_interim"]
    assert isinstance(final, a.Invoice) and final.interim_invoices == (interim.id,)
    assert final.total == Decimal("0.00")
    posted = seen["record_erp_posting"]
    assert isinstance(posted, a.Invoice) and posted.status == "POSTED"
    (ref,) = posted.erp_refs
    assert (ref.target, ref.system, ref.document_id, ref.delivery_id) == (
        "provider", "sap-soap", "5100000001", "d-1")
    paid = seen["record_payment"]
    assert isinstance(paid, a.Invoice) and paid.status == "PARTIALLY_PAID" and paid.paid == Decimal("100.00")
    assert paid.payment_ids() == {"p-1"} and paid.payments[0].amount == Decimal("100.00")
    reversed_ = seen["reverse_payment"]
    assert isinstance(reversed_, a.Invoice) and reversed_.paid == Decimal("0.00")
    assert reversed_.payments[0].reversal is not None
    assert seen["dispute"].status == "DISPUTED"  # type: ignore[attr-defined]
    note = seen["issue_credit_note"]
    assert isinstance(note, a.Invoice) and note.is_credit_note and note.credit_for == interim.id
    assert note.id == ContractClient.credit_note_id(interim.id, 1) and note.total == Decimal("5.00")
    assert seen["get_invoice_credit_note"] == note
    refund = seen["refund_prepaid"]
    assert isinstance(refund, a.Invoice) and refund.is_credit_note
    assert refund.id == ContractClient.prepaid_refund_id("ctr-3") and refund.prepaid_refund


def test_prepaid_and_running_answers(story: Story) -> None:
    topped = story.seen["top_up_prepaid"]
    assert isinstance(topped, a.Prepaid) and topped.balance == Decimal("20000.00")
    movement = topped.movement("t1")
    assert movement is not None and movement.kind == "top_up" and movement.amount == Decimal("20000.00")
    prepaid = story.seen["get_prepaid"]
    assert isinstance(prepaid, a.Prepaid) and prepaid.balance == Decimal("6344.75")
    assert len(prepaid.draws) == 1
    reversed_ = story.seen["reverse_top_up"]
    assert isinstance(reversed_, a.Prepaid) and reversed_.balance == Decimal("0.00")
    back = reversed_.movement("rv-1")
    assert back is not None and back.kind == "top_up_reversal" and back.unrecovered == Decimal("13655.25")
    running = story.seen["get_running"]
    assert isinstance(running, a.RunningPeriods) and [p.period for p in running.periods] == [P]
    period = story.seen["get_running_period"]
    assert isinstance(period, a.RunningPeriod) and period.interim_due
    assert (period.billing_threshold, period.unbilled) == (Decimal("1000.00"), Decimal("13655.25"))


def test_amendment_and_booking_answers(story: Story) -> None:
    seen = story.seen
    assert seen["propose_amendment"].status == "PROPOSED"  # type: ignore[attr-defined]
    accepted = seen["accept_amendment"]
    assert isinstance(accepted, a.Amendment) and accepted.status == "ACCEPTED" and accepted.kind == "end"
    assert seen["reject_amendment"].reason == "no"  # type: ignore[attr-defined]
    assert seen["get_amendment"] == accepted
    history = seen["get_contract_history"]
    assert isinstance(history, a.ContractHistory) and [x.id for x in history.amendments] == ["a1", "a2"]
    booking = seen["accept_booking"]
    assert isinstance(booking, a.Booking) and booking.status == "ACTIVE" and booking.contract_id == "ctr-4"
    assert seen["get_booking"] == booking
    assert seen["list_bookings"].bookings == (booking,)  # type: ignore[attr-defined]
    assert seen["register_shared"].shared  # type: ignore[attr-defined]


def test_refusal_is_chaincode_rejected_with_its_code_and_writes_nothing(story: Story) -> None:
    interim = story.seen["issue_interim_invoice"].id  # type: ignore[attr-defined]
    height = story.ledger.height()
    with pytest.raises(ChaincodeRejected) as refused:
        story.client.record_payment(interim, payment_id="too-much", amount="999999.00", as_org=PROVIDER)
    assert refused.value.code == "invalid_state_transition"  # the invoice was credited
    assert refused.value.error.details["status"] == "CREDITED"
    with pytest.raises(ChaincodeRejected) as unknown:
        story.client.get_invoice("inv-nope", as_org=PROVIDER)
    assert unknown.value.code == "unknown_invoice"
    assert story.ledger.height() == height
    assert "too-much" not in story.client.get_invoice(interim, as_org=PROVIDER).payment_ids()


def test_calls_are_timed_and_failures_counted(story: Story) -> None:
    registry = story.metrics.registry
    assert registry.get_sample_value("ledgerhub_ledger_call_seconds_count",
                                     {"kind": "submit", "fn": "CloseBillingPeriod"}) == 4
    assert registry.get_sample_value("ledgerhub_ledger_call_seconds_count",
                                     {"kind": "evaluate", "fn": "GetInvoice"}) >= 1
    assert registry.get_sample_value("ledgerhub_ledger_errors_total", {"error": "ChaincodeRejected"}) >= 1


def test_every_chaincode_function_has_a_client_method() -> None:
    from chaincode.contract import FUNCTIONS

    methods = {name for name in dir(ContractClient) if not name.startswith("_")}
    snake = {fn: "".join(f"_{c.lower()}" if c.isupper() else c for c in fn).lstrip("_") for fn in FUNCTIONS}
    assert sorted(fn for fn, name in snake.items() if name not in methods) == []


def test_a_client_of_the_gateway_shares_its_ledger_metrics_and_org_mapping(story: Story,
                                                                          tmp_path: Path) -> None:
    from hub.config import Settings
    from hub.services import LedgerGateway

    metrics = Metrics()
    gateway = LedgerGateway(story.ledger, Settings(data_dir=tmp_path), metrics)
    client = ContractClient.of(gateway)
    assert client.ledger is story.ledger and client.metrics is metrics and ContractClient.of(client) is client
    # an operator's org has no ledger identity: it reads as the provider org, as the gateway maps it
    assert client.ledger_org("OperatorOrg") == gateway.ledger_org("OperatorOrg") == PROVIDER
    contract = client.get_contract(CONTRACT_ID, as_org="OperatorOrg")
    assert client is gateway.client  # the gateway's own client: one org mapping, one metrics path
    assert contract.raw == ContractClient(story.ledger).get_contract(CONTRACT_ID, as_org=PROVIDER).raw
    assert client.get_period(CONTRACT_ID, P, as_org=None).raw == \
        ContractClient(story.ledger).get_period(CONTRACT_ID, P, as_org=PROVIDER).raw
    assert metrics.registry.get_sample_value("ledgerhub_ledger_call_seconds_count",
                                             {"kind": "evaluate", "fn": "GetContract"}) == 1  # bare: none


def test_org_mapping_acts_as_provider_for_orgs_without_identity() -> None:
    orgs = OrgMapping(PROVIDER, CUSTOMER, AUDITOR, extra=["JoinedMSP"])
    assert [orgs(o) for o in (PROVIDER, CUSTOMER, AUDITOR, "JoinedMSP", "OperatorOrg")] == [
        PROVIDER, CUSTOMER, AUDITOR, "JoinedMSP", PROVIDER]
    assert ContractClient(object()).ledger_org("OperatorOrg") == "OperatorOrg"  # type: ignore[arg-type]


# --- the answers' shape follows the chaincode ---------------------------------------------------------


def _unmodelled(answer: a.Answer, proposed: Mapping[str, Any] | None) -> set[str]:
    """Keys of this answer and every nested answer its model does not name."""
    extra = set(type(answer).unmodelled(answer.raw))
    if type(answer).OPEN:
        extra -= set(proposed or {})
    for f in dataclasses.fields(answer):
        value = getattr(answer, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, a.Answer) and f.name != "commit":
                extra |= {f"{f.name}.{k}" for k in _unmodelled(item, proposed)}
    return extra


def test_every_answer_has_exactly_the_keys_its_model_names(story: Story) -> None:
    assert len(story.seen) >= 40
    for name, answer in story.seen.items():
        proposed = story.proposed.get(getattr(answer, "id", ""), story.proposed[CONTRACT_ID])
        assert _unmodelled(answer, proposed) == set(), f"{name}: the chaincode answers keys not modelled"
        again = type(answer).from_raw(answer.raw)  # every required key is there, of the modelled type
        assert again == answer


def test_a_missing_required_key_is_an_answer_shape_error(story: Story) -> None:
    invoice = story.seen["close_billing_period"]
    raw = {k: v for k, v in invoice.raw.items() if k != "total"}
    with pytest.raises(a.AnswerShapeError, match="missing key 'total'"):
        a.Invoice.from_raw(raw)
    with pytest.raises(a.AnswerShapeError, match="'paid'"):
        a.Invoice.from_raw({**invoice.raw, "paid": 12.5})  # money is a decimal string, never a float
    assert a.Invoice.required_keys() <= set(invoice.raw)
