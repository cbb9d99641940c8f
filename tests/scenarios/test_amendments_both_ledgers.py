"""An amendment mid-period on both ledgers (embedded, and the session's real Fabric network), in real time:
version 2 agreed effective a minute from now, one reading before that instant and two after it, and the
exact preview of the running period splits there: version 1's flat fee and minimum for the seconds before,
version 2's after, each rounded once (the expected amounts are computed here from the period's bounds with
zoneinfo and exact fractions, independently of the contract's proration code). The history names both
versions with the transactions, which both orgs endorsed."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from tests.helpers.api import auth, last_month, post_usage, usage
from tests.helpers.chaincode import CUSTOMER, PROVIDER, reading
from tests.helpers.story import Story, open_contract
from tests.unit.test_contract_amendments import PLAN_V1, PLAN_V2

pytestmark = pytest.mark.integration
_, START = last_month()
BERLIN = ZoneInfo("Europe/Berlin")


def bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime, str]:
    local = now.astimezone(BERLIN)
    start = dt.datetime(local.year, local.month, 1, tzinfo=BERLIN)
    ny, nm = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    end = dt.datetime(ny, nm, 1, tzinfo=BERLIN)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC), f"{local.year:04d}-{local.month:02d}"


def cents(value: Fraction) -> str:
    return str((Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"),
                                                                                 rounding=ROUND_HALF_UP))


def expected_lines(part: Fraction, before: int, after: int) -> list[tuple[str, int, str]]:
    out = []
    for version, share, n, (flat, price, minimum) in (
        (1, part, before, (500, 80, 3000)), (2, 1 - part, after, (620, 95, 3600)),
    ):
        fee, use, floor = cents(flat * share), Decimal(n * price), cents(minimum * share)
        out += [("platform", version, fee), ("scans", version, f"{use:.2f}")]
        if Decimal(fee) + use < Decimal(floor):
            out.append(("minimum_commitment_true_up", version, f"{Decimal(floor) - Decimal(fee) - use:.2f}"))
    return out


def test_amendment_mid_period_and_exact_preview(story: Story) -> None:
    with story.hub() as client:
        plan = {k: v for k, v in PLAN_V1.items() if k != "start"}
        contract, (key,) = open_contract(client, story, start=START, **plan)
        c = f"/v1/contracts/{contract['id']}"
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        effective = now + dt.timedelta(seconds=60)
        p_start, p_end, period = bounds(now)
        late = bounds(effective + dt.timedelta(seconds=90))[2] != period
        if late or now - p_start < dt.timedelta(minutes=2):
            pytest.skip("too close to a month boundary for a split inside one period")
        r = client.post(f"{c}/amendments", headers=auth("tok-provider"),
                        json={"id": "am-1", "effective_from": effective.isoformat(), "plan": PLAN_V2})
        assert r.status_code == 201, r.text
        r = client.post(f"{c}/amendments/am-1/accept", headers=auth("tok-customer"))
        assert r.status_code == 200, r.text
        accepted = r.json()["amendment"]
        assert accepted["version"] == 2
        tx = story.ledger.tx(accepted["answered_tx"])
        assert tx.status == "VALID" and {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}

        pause = threading.Event()
        while dt.datetime.now(dt.UTC) < effective + dt.timedelta(seconds=3):
            pause.wait(0.5)
        def at(seconds: int) -> str:
            return (effective + dt.timedelta(seconds=seconds)).isoformat()

        readings = [reading(story.id("r-before"), "scan", "1", at(-30)),
                    reading(story.id("r-at"), "scan", "1", at(0)),
                    reading(story.id("r-after"), "scan", "1", at(2))]
        sent = post_usage(client, usage(key, story.id("m-1"), readings, device_id=contract["assets"][0]))
        assert sent.status_code == 202 and sent.json()["accepted"] == 3, sent.text

        r = client.get(f"{c}/periods/{period}/preview", headers=auth("tok-customer"))
        assert r.status_code == 200, r.text
        invoice = r.json()["invoice"]
        part = Fraction(int((effective - p_start).total_seconds()), int((p_end - p_start).total_seconds()))
        got = [(ln["charge_id"], ln["plan_version"], ln["amount"]) for ln in invoice["lines"]]
        # the reading at the instant itself is version 2's
        assert got == expected_lines(part, before=1, after=2)
        assert [s["readings"] for s in invoice["segments"]] == [1, 2]
        subtotal = sum((Decimal(a) for _, _, a in got), Decimal(0))
        assert Decimal(invoice["subtotal"]) == subtotal
        tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(invoice["tax"]) == tax
        # the usage view rates with the same code: the cost to date is the preview's money
        cost = client.get(f"{c}/usage?period={period}", headers=auth("tok-provider")).json()["cost"]
        assert (cost["lines"], cost["total"]) == (invoice["lines"], invoice["total"])

        history = client.get(f"{c}/history", headers=auth("tok-auditor")).json()
        assert [v["version"] for v in history["versions"]] == [1, 2]
        assert history["versions"][1]["accepted_tx"] == accepted["answered_tx"]
        assert story.ledger.tx(history["versions"][1]["proposed_tx"]).status == "VALID"
