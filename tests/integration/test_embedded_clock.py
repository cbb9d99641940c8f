"""A client that forward-dates its proposals is refused by the embedded ledger's peers (ADR 0027).

The embedded ledger's gateway stamps proposals with its clock, but a client may choose the timestamp
(`submit(..., timestamp=...)`), as any Fabric client can. The peers compare it with their own clock
(`endorser_clock`, by default the same clock) and refuse a transaction more than `max_clock_skew` away
with `tx_timestamp_skew`, writing nothing. Through the API the refusal is problem+json 503.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.ledger.base import ChaincodeRejected
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.api import auth, hub_client, hub_settings, last_month, setup_contract, ts, usage
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.embedded import Clock, contract_ledger

pytestmark = pytest.mark.integration

SKEW = dt.timedelta(minutes=5)
CLOSE_NOV = {"contract_id": CONTRACT_ID, "period": "2026-11"}


def _j(obj: Any) -> list[str]:
    return [json.dumps(obj)]


def _active(path: Path, **kwargs: Any) -> tuple[EmbeddedLedger, Clock]:
    """Mid-November 2026 by the network's clock: the sample contract active, one message recorded."""
    clock = Clock(MID_NOV)
    led = contract_ledger(path, clock, **kwargs)
    key = make_device_key()
    led.submit("RegisterAsset", _j(sample_asset(key)), as_org=PROVIDER)
    led.submit("ProposeContract", _j(sample_contract()), as_org=PROVIDER)
    led.submit("AcceptContract", _j({"contract_id": CONTRACT_ID}), as_org=CUSTOMER)
    led.submit("RecordUsage", _j({"messages": example_usage(key)}), as_org=PROVIDER)
    return led, clock


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[EmbeddedLedger]:
    led, _ = _active(tmp_path / "ledger", max_clock_skew=SKEW)
    yield led
    led.close()


def _everything(led: EmbeddedLedger) -> tuple[int, list[tuple[str, Any]]]:
    return led.height(), [(k, e.value) for k, e in led.state()]


def _refused(led: EmbeddedLedger, fn: str, body: Any, org: str, at: dt.datetime) -> ChaincodeRejected:
    before = _everything(led)
    with pytest.raises(ChaincodeRejected) as err:
        led.submit(fn, _j(body), as_org=org, timestamp=at)
    assert _everything(led) == before  # no block, no state change
    return err.value


def test_a_forward_dated_close_is_refused_and_the_period_stays_open(ledger: EmbeddedLedger) -> None:
    # 2026-12-02 is after November has ended in Berlin: the contract would close the period if it
    # believed the client's timestamp, and the late readings of November would be refused from then on
    err = _refused(ledger, "CloseBillingPeriod", CLOSE_NOV, PROVIDER, dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    assert err.code == "tx_timestamp_skew"
    assert err.error.details["max_skew_seconds"] == 300
    period = json.loads(ledger.evaluate("GetPeriod", _j(CLOSE_NOV), as_org=CUSTOMER))
    assert period["status"] == "OPEN"
    # back-dating is refused the same way
    assert _refused(ledger, "CloseBillingPeriod", CLOSE_NOV, PROVIDER, MID_NOV - SKEW * 2).code == (
        "tx_timestamp_skew"
    )


def test_future_dated_readings_are_refused(ledger: EmbeddedLedger) -> None:
    key = make_device_key()
    later = MID_NOV + dt.timedelta(hours=3)
    # readings three hours ahead of the network's clock, in a proposal stamped to match them
    message = signed_message(key, [reading("r-future", "scan", "500", later.isoformat())], message_id="m-fut")
    usage_before = json.loads(ledger.evaluate("GetUsage", _j(CLOSE_NOV), as_org=CUSTOMER))
    err = _refused(ledger, "RecordUsage", {"messages": [message]}, PROVIDER, later)
    assert err.code == "tx_timestamp_skew"
    assert json.loads(ledger.evaluate("GetUsage", _j(CLOSE_NOV), as_org=CUSTOMER)) == usage_before


def test_a_timestamp_within_the_skew_is_endorsed(ledger: EmbeddedLedger) -> None:
    key = make_device_key()
    at = MID_NOV + dt.timedelta(minutes=4)
    message = signed_message(key, [reading("r-near", "scan", "1", at.isoformat())], message_id="m-near")
    commit = ledger.submit("RecordUsage", _j({"messages": [message]}), as_org=PROVIDER, timestamp=at)
    assert json.loads(commit.payload)["accepted"] == 1
    assert ledger.tx(commit.tx_id).timestamp == at


def test_queries_are_not_bounded(ledger: EmbeddedLedger) -> None:
    far = MID_NOV + dt.timedelta(days=3)
    usage_then = json.loads(ledger.evaluate("GetUsage", _j(CLOSE_NOV), as_org=CUSTOMER, timestamp=far))
    assert usage_then["status"] == "OPEN" and usage_then["cost"]["readings"] == 170


def test_a_peer_whose_clock_differs_from_the_gateway_refuses(tmp_path: Path) -> None:
    """The network's peers on their own clock: the gateway's proposals are judged against it."""
    peer = Clock(MID_NOV)
    led, gateway = _active(tmp_path / "ledger", max_clock_skew=SKEW, endorser_clock=peer)
    try:
        gateway.now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)  # the gateway's clock runs ahead
        with pytest.raises(ChaincodeRejected) as err:
            led.submit("CloseBillingPeriod", _j(CLOSE_NOV), as_org=PROVIDER)
        assert err.value.code == "tx_timestamp_skew"
        peer.now = gateway.now  # once the peers agree that November has ended, the close goes through
        invoice = json.loads(led.submit("CloseBillingPeriod", _j(CLOSE_NOV), as_org=PROVIDER).payload)
        assert invoice["total"] == "13655.25"
    finally:
        led.close()


def test_without_the_bound_a_forward_dated_close_goes_through(tmp_path: Path) -> None:
    """What the bound prevents (the contract's own rules trust the client's timestamp)."""
    led, _ = _active(tmp_path / "ledger", max_clock_skew=None)
    try:
        early = led.submit("CloseBillingPeriod", _j(CLOSE_NOV), as_org=PROVIDER,
                           timestamp=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
        assert json.loads(early.payload)["status"] == "ISSUED"
    finally:
        led.close()


def test_the_api_answers_problem_json_503(tmp_path: Path) -> None:
    """The hub stamps proposals with its clock; a peer whose clock is an hour away refuses, and the API
    says so with the stable code (the caller's request itself was fine, so it is a 503)."""
    offset = [dt.timedelta(0)]
    led = contract_ledger(tmp_path / "ledger", max_clock_skew=SKEW,
                          endorser_clock=lambda: dt.datetime.now(dt.UTC) + offset[0])
    key = make_device_key("api-clock")
    with hub_client(hub_settings(tmp_path), led) as client:
        setup_contract(client, key)
        period, _ = last_month()
        offset[0] = dt.timedelta(hours=1)
        message = usage(key, "m-skew", [reading("r-1", "scan", "1", ts(period, 10))])
        answer = client.post("/v1/usage", json=message, headers=auth("tok-device"))
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "tx_timestamp_skew"
        closed = client.post(f"/v1/contracts/{CONTRACT_ID}/periods/{period}/close",
                             headers=auth("tok-operator"))
        assert closed.status_code == 503 and closed.json()["code"] == "tx_timestamp_skew", closed.text
        offset[0] = dt.timedelta(0)  # the clocks agree again: the same message is accepted
        again = client.post("/v1/usage", json=message, headers=auth("tok-device"))
        assert again.status_code == 202, again.text


def test_a_posting_refused_for_the_clock_is_retried_not_dead_lettered(tmp_path: Path) -> None:
    """The ERP has the invoice when RecordErpPosting is refused for the peer's clock: the delivery waits
    for the ledger (no second ERP posting), and is recorded once the clocks agree."""
    from connectors.emulators.sap_soap import SapSoapEmulator
    from tests.helpers.delivery import delivery_service, hub_settings_for, issue_invoices

    offset = [dt.timedelta(0)]
    led = contract_ledger(tmp_path / "ledger", max_clock_skew=SKEW,
                          endorser_clock=lambda: dt.datetime.now(dt.UTC) + offset[0])
    try:
        with SapSoapEmulator() as emulator:
            [invoice_id] = issue_invoices(led, 1, erp={"provider": "sap-soap"})
            svc = delivery_service(led, hub_settings_for(tmp_path, emulator))
            svc.consume_events()
            offset[0] = dt.timedelta(hours=1)
            svc.dispatch_once()
            [row] = svc.list()
            assert row["state"] == "posted", row  # the ERP has it; the ledger write waits
            assert row["last_error"]["code"] == "tx_timestamp_skew"
            offset[0] = dt.timedelta(0)
            svc.run_until_idle()
            [row] = svc.list()
            assert row["state"] == "delivered", row
            assert len(emulator.postings()) == 1
            recorded = json.loads(led.evaluate("GetInvoice", _j({"id": invoice_id}), as_org=PROVIDER))
            assert recorded["erp_refs"][0]["document_id"] == row["erp_ref"]["document_id"]
            svc.dispatcher.close()
    finally:
        led.close()
