"""Fixtures and builders for the delivery engine and SAP connector tests.

- `issue_invoices(ledger, n)`: one contract on the real embedded ledger with `n` closed monthly periods,
  so `n` invoices (each emits InvoiceIssued); both targets go to the `sap-soap` connector by default;
- `hub_settings_for(emulator, ...)`: Settings with the SAP connector pointed at a running emulator and
  the party master data (SAP partner numbers) it needs;
- `delivery_service(...)`: a migrated database and a DeliveryService over it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hub.config import Settings
from hub.delivery.dispatcher import DeliveryOptions
from hub.delivery.service import DeliveryService
from hub.store.session import make_engine, make_sessionmaker, migrate
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract

FAST = DeliveryOptions(concurrency=4, batch=16, claim_seconds=30, max_attempts=12, backoff_base=0.01,
                       backoff_cap=0.05, breaker_threshold=8, breaker_open_seconds=0.05, poll_seconds=0.02)
PARTIES = {
    PROVIDER: {"name": "Provider GmbH", "country": "DE", "vat_id": "DE123456788",
               "erp_ids": {"sap_supplier": "300001"}},
    CUSTOMER: {"name": "Clinic Berlin AG", "country": "DE", "vat_id": "DE987654328",
               "erp_ids": {"sap_customer": "10100001"}},
}


def months(start: dt.date, count: int) -> list[str]:
    year, month = start.year, start.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def issue_invoices(ledger: Any, count: int, *, contract_id: str = "ctr-dlv-1",
                   erp: dict[str, str] | None = None, start: str = "2008-01-01",
                   asset_id: str | None = None) -> list[str]:
    """A contract starting at `start` and `count` closed periods on the ledger: `count` invoices."""
    key = make_device_key(contract_id)
    asset_id = asset_id or f"dev-{contract_id}"
    ledger.submit("RegisterAsset", [json.dumps(sample_asset(key, asset_id))], as_org=PROVIDER)
    contract = sample_contract(id=contract_id, assets=[asset_id], start=start,
                               erp=erp or {"provider": "sap-soap", "customer": "sap-soap"})
    ledger.submit("ProposeContract", [json.dumps(contract)], as_org=PROVIDER)
    ledger.submit("AcceptContract", [json.dumps({"contract_id": contract_id})], as_org=CUSTOMER)
    invoices = []
    for period in months(dt.date.fromisoformat(start), count):
        body = json.dumps({"contract_id": contract_id, "period": period})
        out = ledger.submit("CloseBillingPeriod", [body], as_org=PROVIDER)
        invoices.append(json.loads(out.payload)["id"])
    return invoices


def sap_settings(emulator: Any, **overrides: Any) -> dict[str, Any]:
    settings = {"wsdl": emulator.wsdl_url, "endpoint": emulator.endpoint, "sap_client": "100",
                "timeout": 1.0, "connect_timeout": 1.0, "company_code": "1010"}
    settings.update(overrides)
    return settings


def hub_settings_for(tmp_path: Path, emulator: Any, database_url: str | None = None,
                     **connector: Any) -> Settings:
    return Settings(data_dir=tmp_path / "hub", database_url=database_url,
                    connectors={"sap-soap": sap_settings(emulator, **connector)}, parties=PARTIES)


def delivery_service(ledger: Any, settings: Settings, options: DeliveryOptions = FAST,
                     **kw: Any) -> DeliveryService:
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    return DeliveryService(ledger, make_sessionmaker(engine), settings, options=options, **kw)


def postings_by_invoice(emulator: Any) -> dict[tuple[str, str], int]:
    """How often the emulator posted each (invoice id, partner kind): the exactly-once evidence."""
    counts: dict[tuple[str, str], int] = {}
    for posting in emulator.postings():
        key = (posting["item_text"], posting["partner_kind"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def worker_main(argv: list[str] | None = None) -> None:
    """A dispatcher process for the kill -9 test: `python -c "from tests.helpers.delivery import
    worker_main; worker_main()" CONFIG_JSON`. Opens the embedded ledger and the outbox database, consumes
    events and delivers until nothing is open, then exits 0."""
    import sys

    from tests.helpers.api import embedded_ledger

    config = json.loads((argv or sys.argv)[1])
    ledger = embedded_ledger(Path(config["ledger_dir"]))
    try:
        settings = Settings(data_dir=Path(config["ledger_dir"]).parent / "hub",
                            database_url=config["database_url"], connectors=config["connectors"],
                            parties=PARTIES)
        service = delivery_service(ledger, settings, DeliveryOptions(**config["options"]),
                                   worker=config.get("worker", "worker"))
        service.run_until_idle(max_rounds=1_000_000)
        service.dispatcher.close()
    finally:
        ledger.close()
    print("worker done", flush=True)
