"""Settings for the REST connectors against their emulators, shared by integration and fault tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from connectors.base import Delivery, InvoiceDocument, Party
from connectors.emulators.server import EmulatorHandler, EmulatorServer
from tests.helpers.chaincode import CUSTOMER, PROVIDER

# the contract fields a connector reads from the API.md example (id for references, tax for the lines)
SAMPLE_CONTRACT_REF: dict[str, Any] = {"id": "ctr-mri-001", "tax": {"rate": "0.19", "category": "S"}}

PARTIES: dict[str, dict[str, Any]] = {
    PROVIDER: {
        "name": "MedLease GmbH",
        "country": "DE",
        "vat_id": "DE123456788",
        "city": "Berlin",
        "street": "Invalidenstr. 1",
        "postal_code": "10115",
        "email": "ar@medlease.example",
        "erp_ids": {
            "sap_supplier": "17300001",
            "oracle_supplier": "MedLease GmbH",
            "iban": "DE89370400440532013000",
        },
    },
    CUSTOMER: {
        "name": "Klinikum Mitte",
        "country": "DE",
        "vat_id": "DE987654328",
        "city": "Berlin",
        "street": "Chariteplatz 1",
        "postal_code": "10117",
        "email": "ap@klinikum.example",
        "erp_ids": {"sap_customer": "10100001", "oracle_customer_number": "1008"},
    },
}


def oracle_settings(emulator: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": emulator.base_url,
        "business_unit": "Vision Operations",
        "timeout": 1.0,
        "auth": {"type": "basic", "username": "integration", "password": "secret"},
        **overrides,
    }


def odata_settings(emulator: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": emulator.base_url,
        "username": "LEDGERHUB",
        "password": "Welcome1",
        "sap_client": "100",
        "company_code": "1010",
        "timeout": 1.0,
        **overrides,
    }


def sample_invoice(n: int = 1, total: str = "13655.25") -> dict[str, Any]:
    """The API.md example invoice, numbered `n` (a bad `total` makes ERPs refuse it)."""
    return {
        "id": f"inv-ctr-mri-001-2026-{n:04d}",
        "contract_id": "ctr-mri-001",
        "period": "2026-10",
        "currency": "EUR",
        "issued_at": "2026-11-01T02:00:00+00:00",
        "lines": [
            {"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"},
            {
                "charge_id": "scans",
                "model": "graduated",
                "metric": "scan",
                "quantity": "130",
                "amount": "10600.00",
            },
            {
                "charge_id": "hours",
                "model": "per_unit",
                "metric": "magnet_hours",
                "quantity": "30.00",
                "amount": "375.00",
            },
        ],
        "subtotal": "11475.00",
        "tax": "2180.25",
        "total": total,
    }


def sample_document(seller: Party, buyer: Party, n: int = 1, **invoice_kw: Any) -> InvoiceDocument:
    """What the dispatcher hands a connector for `sample_invoice(n, **invoice_kw)`."""
    return InvoiceDocument(
        invoice=sample_invoice(n, **invoice_kw), contract=SAMPLE_CONTRACT_REF, seller=seller, buyer=buyer
    )


def sample_delivery(target: str, n: int = 1, attempt: int = 1) -> Delivery:
    """The outbox row for `sample_invoice(n)` and `target`; its message UUID is fixed per (invoice, target),
    as the dispatcher fixes it once and reuses it on every retry."""
    inv_id = sample_invoice(n)["id"]
    return Delivery(
        id=f"dlv-{inv_id}-{target}",
        message_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, inv_id + target)),
        invoice_id=inv_id,
        target=target,  # type: ignore[arg-type]
        attempt=attempt,
    )


def check_emulator_controls(
    base_url: str, post_one: Callable[[], object], postings: Callable[[], list[Any]]
) -> None:
    """The control endpoints every emulator shares, over HTTP: a fault plan is set and read back, reset
    (POST only) forgets the postings and the faults, an unknown control path is a 404."""
    post_one()
    assert postings()
    plan = {"probability": 0.25, "kinds": ["error_5xx"], "seed": 7}
    r = httpx.post(f"{base_url}/_emulator/faults", json=plan)
    assert r.status_code == 200 and r.json()["probability"] == 0.25, r.text
    snap = httpx.get(f"{base_url}/_emulator/faults").json()
    assert (snap["probability"], snap["kinds"], snap["seed"]) == (0.25, ["error_5xx"], 7)
    assert httpx.get(f"{base_url}/_emulator/reset").status_code == 404  # a GET changes nothing
    assert postings()
    r = httpx.post(f"{base_url}/_emulator/reset", json={})
    assert r.status_code == 200 and r.json() == {"reset": True}
    assert postings() == []
    assert httpx.get(f"{base_url}/_emulator/faults").json()["probability"] == 0.0
    assert httpx.post(f"{base_url}/_emulator/nothing", json={}).status_code == 404


class _StatusHandler(EmulatorHandler):
    def _answer(self) -> None:
        self.read_body()
        self.send_json(self.emulator.status, {"error": "scripted"})  # type: ignore[attr-defined]

    do_GET = do_POST = _answer


class StatusServer(EmulatorServer):
    """A real HTTP endpoint that answers every request with `status` (an ERP or token service that is down
    or refuses): `with StatusServer(503) as down: ... down.base_url`."""

    handler_class = _StatusHandler
    thread_name = "status-server"

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status


_OPENED: list[Any] = []


def track(connector: Any) -> Any:
    """Remember a connector a test made, so `close_connectors` closes it (each holds an HTTP pool)."""
    _OPENED.append(connector)
    return connector


def close_tracked() -> None:
    """Close every connector `track` remembered (the integration tier's autouse `close_connectors` calls
    this after each test)."""
    while _OPENED:
        _OPENED.pop().close()
