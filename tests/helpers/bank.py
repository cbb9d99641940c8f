"""The bank tests' story on the embedded ledger: a contract with one issued (and ERP-posted) invoice, and
the calls to import statements and read the reconciliation queue. The `story` fixture that builds it is in
tests/integration/conftest.py."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.api import (
    auth,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import make_device_key, reading

XML = {"Content-Type": "application/xml"}


class Story:
    def __init__(self, client: TestClient, ledger: Any) -> None:
        self.client, self.ledger = client, ledger

    def invoice(self, n: int = 1, *, posted: bool = True) -> dict[str, Any]:
        """A fresh contract with one issued (and, by default, ERP-posted) invoice."""
        key = make_device_key(f"bank-{n}")
        contract = setup_contract(self.client, key, id=f"ctr-bank-{n}", assets=[f"mri-bank-{n}"])
        period, _ = last_month()
        sent = post_usage(self.client, usage(key, f"m-{n}", [reading("r-1", "scan", "4", ts(period, 5))],
                                             device_id=f"mri-bank-{n}"))
        assert sent.status_code == 202, sent.text
        closed = self.client.post(f"/v1/contracts/{contract['id']}/periods/{period}/close",
                                  headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice = closed.json()
        if posted:
            self.ledger.submit("RecordErpPosting", [json.dumps(
                {"invoice_id": invoice["id"], "target": "provider", "system": "sap-soap",
                 "document_id": f"51000000{n}", "delivery_id": f"dl-{n}"})], as_org="ProviderMSP")
        return self.get(invoice["id"])

    def get(self, invoice_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/invoices/{invoice_id}", headers=auth("tok-provider"))
        assert r.status_code == 200, r.text
        return r.json()

    def send(self, data: bytes, token: str = "tok-operator", headers: dict | None = None) -> Any:
        return self.client.post("/v1/bank-statements", content=data,
                                headers={**auth(token), **(headers or XML)})

    def queue(self, token: str = "tok-provider") -> list[dict[str, Any]]:
        r = self.client.get("/v1/bank-statements/queue", headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()["items"]
