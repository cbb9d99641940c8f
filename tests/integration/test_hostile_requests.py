"""Hostile input against the real app on the real embedded ledger: every case of the generated corpus
(tests/helpers/hostile.py) must answer its exact 4xx problem+json `code`, and afterwards the ledger height,
the readings on the ledger and every row of every database table must be exactly as before."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect, text

from tests.helpers.api import (
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    setup_contract,
    usage,
)
from tests.helpers.chaincode import PROVIDER, make_device_key
from tests.helpers.hostile import World, corpus, signed_bad_readings

pytestmark = pytest.mark.integration


def db_snapshot(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: the exact contents, not just counts."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in sorted(inspect(engine).get_table_names()):
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def ledger_readings(ledger: Any, contract_id: str, periods: list[str]) -> dict[str, Any]:
    return {
        p: json.loads(
            ledger.evaluate(
                "GetReadings", [json.dumps({"contract_id": contract_id, "period": p})], as_org=PROVIDER
            )
        )
        for p in periods
    }


@pytest.fixture
def world(tmp_path: Path):
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    settings = hub_settings(tmp_path, max_body_bytes=1_000_000)
    with hub_client(settings, ledger, background=False) as client:
        key = make_device_key("hostile")
        contract = setup_contract(client, key)
        closed, _ = last_month()
        r = client.post(
            f"/v1/contracts/{contract['id']}/periods/{closed}/close", headers=auth("tok-operator")
        )
        assert r.status_code in (200, 201), r.text
        invoice_id = r.json()["id"]
        now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        local = now.astimezone(ZoneInfo(contract.get("timezone", "UTC")))
        open_period = f"{local.year:04d}-{local.month:02d}"
        reading_ts = now.replace(microsecond=0).isoformat()
        good = usage(
            key,
            "hostile-good",
            [{"id": "good-1", "metric": "scan", "quantity": "1", "timestamp": reading_ts}],
        )
        r = client.post("/v1/usage", json=good, headers=auth("tok-device"))
        assert r.status_code == 202, r.text
        w = World(
            key=key,
            stranger=make_device_key("stranger"),
            asset_id=contract["assets"][0],
            contract_id=contract["id"],
            invoice_id=invoice_id,
            open_period=open_period,
            reading_ts=reading_ts,
            good=good,
        )
        yield client, ledger, w, [closed, open_period], r.json()


def send(client: Any, case: Any) -> Any:
    headers = dict(case.headers)
    if case.token is not None:
        headers.update(auth(case.token))
    return client.request(case.method, case.path, content=case.body, headers=headers)


def test_hostile_corpus_exact_codes_and_nothing_changes(world) -> None:
    client, ledger, w, periods, _first = world
    cases = corpus(w)
    assert len(cases) >= 200
    engine = client.app.state.services.engine
    before = (ledger.height(), ledger_readings(ledger, w.contract_id, periods), db_snapshot(engine))
    wrong = []
    for case in cases:
        r = send(client, case)
        ctype = r.headers.get("content-type", "")
        code = r.json().get("code") if ctype.startswith("application/problem+json") else None
        if (r.status_code, code) != (case.status, case.code) or not ctype.startswith(
            "application/problem+json"
        ):
            wrong.append(
                f"{case.name}: expected {case.status} {case.code}, got {r.status_code} {ctype} "
                f"{r.text[:160]!r}"
            )
    assert not wrong, f"{len(wrong)} of {len(cases)} cases answered wrongly:\n" + "\n".join(wrong)
    after = (ledger.height(), ledger_readings(ledger, w.contract_id, periods), db_snapshot(engine))
    assert after[0] == before[0], "a hostile request reached the ledger"
    assert after[1] == before[1], "readings on the ledger changed"
    assert after[2] == before[2], "database contents changed"
    assert ledger.submits["RecordUsage"] == 1  # only the fixture's genuine message


def test_corpus_covers_every_family(world) -> None:
    """The corpus is the evidence; make sure its families do not silently shrink."""
    _client, _ledger, w, _periods, _ = world
    families = Counter(c.name.split(":")[0] for c in corpus(w))
    assert families["malformed"] >= 90 and families["oversized_declared"] >= 6
    assert families["usage_type"] >= 20 and families["forged"] >= 20
    assert families["replayed_signature"] == 4 and families["other_tenant"] >= 10
    assert families["device_id_trick"] >= 20 and families["header"] >= 8
    assert families["traversal"] + families["traversal_route"] >= 8
    assert families["amendment"] >= 20
    assert families["money_terms"] >= 9 and families["prepaid_refund"] == 3
    assert families["booking"] >= 15


def test_replay_of_an_accepted_message_returns_the_first_answer_and_writes_nothing(world) -> None:
    client, ledger, w, _periods, first = world
    height = ledger.height()
    for _ in range(3):
        r = client.post("/v1/usage", json=w.good, headers=auth("tok-device"))
        assert r.status_code == 202 and r.json() == first
    assert ledger.height() == height


def test_chunked_body_over_the_limit_is_refused(world) -> None:
    """No Content-Length (chunked): the limit is enforced on the streamed bytes."""
    client, ledger, _w, _periods, _ = world
    height = ledger.height()

    def chunks():
        for _ in range(200):
            yield b" " * 65536

    r = client.post(
        "/v1/usage", content=chunks(), headers={**auth("tok-device"), "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert ledger.height() == height


def test_signed_messages_with_bad_readings_write_no_reading(world) -> None:
    """Genuine device messages with invalid readings: the chaincode's verdict is recorded (one transaction
    per verdict, ADR 0006, so a replay answers the same) but no reading, aggregate or invoice changes, and
    the only rows the hub adds are the refusals' idempotency records."""
    client, ledger, w, periods, _ = world
    engine = client.app.state.services.engine
    cases = signed_bad_readings(w)
    readings_before = ledger_readings(ledger, w.contract_id, periods)
    db_before = db_snapshot(engine)
    usage_before = client.get(
        f"/v1/contracts/{w.contract_id}/usage?period={w.open_period}", headers=auth("tok-provider")
    ).json()
    wrong = []
    for name, msg, code in cases:
        r = client.post("/v1/usage", json=msg, headers=auth("tok-device"))
        body = r.json()
        if (
            r.status_code != 400
            or body.get("code") != code
            or not r.headers["content-type"].startswith("application/problem+json")
        ):
            wrong.append(f"{name}: expected 400 {code}, got {r.status_code} {r.text[:160]}")
        elif body.get("reading_ids") != [msg["readings"][0]["id"]]:
            wrong.append(f"{name}: refusal does not name the bad reading: {body}")
        replay = client.post("/v1/usage", json=msg, headers=auth("tok-device"))
        if replay.json() != body:
            wrong.append(f"{name}: replay answered differently")
    assert not wrong, "\n".join(wrong)
    assert ledger_readings(ledger, w.contract_id, periods) == readings_before
    usage_after = client.get(
        f"/v1/contracts/{w.contract_id}/usage?period={w.open_period}", headers=auth("tok-provider")
    ).json()
    assert usage_after["cost"] == usage_before["cost"]
    db_after = db_snapshot(engine)
    for table, rows in db_after.items():
        if table != "idempotency_record":
            assert rows == db_before[table], f"table {table} changed"
    added = set(db_after["idempotency_record"]) - set(db_before["idempotency_record"])
    assert len(added) == len(cases)
    columns = [c["name"] for c in inspect(engine).get_columns("idempotency_record")]
    status_at = columns.index("status_code")
    assert all(row[status_at] == 400 for row in added)
