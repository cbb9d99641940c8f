"""A local Oracle Fusion REST endpoint for receivables and payables invoices, for tests and the demo.

Shaped by the real definitions in ../shared/erp/oracle (the Singer schemas list each resource's fields
and types; the example requests show what Oracle accepts): when those files are present, a posted field
that the real resource does not have, or a value of the wrong type, is refused as Oracle would; without
them a built-in list of the fields the connector uses applies. Behaviour copied from the real service:

* writes need `Content-Type: application/vnd.oracle.adf.resourceitem+json` (else 415);
* collections answer `{items, count, hasMore, limit, offset, links}` and filter with `q=Field=value;...`;
* an AP invoice number is unique per supplier; `Upsert-Mode: true` turns a duplicate create into an update;
* an AR transaction number (at most 20 characters) is unique within its transaction source;
* errors are `application/vnd.oracle.adf.error+json` with `o:errorDetails`;
* basic auth, a static bearer token, or OAuth client credentials from `/oauth2/v1/token`.

Control endpoints for tests (not Oracle's): `/_emulator/postings`, `/_emulator/faults`, `/_emulator/reset`,
`/_emulator/{resource}/{id}/payments` ({"amount"}) and `/_emulator/{resource}/{id}/cancel`.

This module is the HTTP side (ADF REST routes, auth, media types, faults); the books it keeps (resource
definitions, validation, posted items) are `oracle_state.py`.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.emulators.faults import FaultInjector, FaultKind
from connectors.emulators.oracle_state import (
    SCHEMA_FILES,
    SHARED_ORACLE,
    OracleError,
    OracleState,
    load_field_types,
    validate,
)
from connectors.emulators.server import EmulatorHandler, EmulatorServer

__all__ = [
    "API_ROOT", "COLLECTION_MEDIA_TYPE", "ERROR_MEDIA_TYPE", "ITEM_MEDIA_TYPE", "OracleError",
    "OracleRestEmulator", "OracleState",
]  # fmt: skip

API_ROOT = "/fscmRestApi/resources/11.13.18.05"
ITEM_MEDIA_TYPE = "application/vnd.oracle.adf.resourceitem+json"
COLLECTION_MEDIA_TYPE = "application/vnd.oracle.adf.resourcecollection+json"
ERROR_MEDIA_TYPE = "application/vnd.oracle.adf.error+json"


class OracleRestEmulator(EmulatorServer):
    thread_name = "oracle-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = "integration",
        password: str | None = "secret",  # noqa: S107 - an emulator's test credential
        client_id: str = "ledgerhub",
        client_secret: str = "s3cret",  # noqa: S107 - an emulator's test credential
        shared_dir: Path | None = SHARED_ORACLE,
        faults: FaultInjector | None = None,
        **kw: Any,
    ):
        super().__init__(host, port, **kw)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.static_tokens: set[str] = set()
        self.faults = faults or FaultInjector()
        self.state = OracleState()
        self.field_types = load_field_types(shared_dir if shared_dir and shared_dir.is_dir() else None)
        self.timeout_processing = True

    def reset(self) -> None:
        """Forget every posting and clear the faults (OAuth tokens already issued stay valid)."""
        self.state = OracleState()
        self.faults.clear()

    @property
    def shaped_by_real_schemas(self) -> bool:
        return set(self.field_types) == set(SCHEMA_FILES)

    def postings(self, resource: str | None = None) -> list[dict[str, Any]]:
        return self.state.postings(resource)

    # --- the books (oracle_state.py) -------------------------------------------------------------------

    def validate(self, resource: str, body: dict[str, Any]) -> None:
        validate(resource, body, self.field_types)

    def create(self, resource: str, body: dict[str, Any], upsert: bool) -> tuple[int, dict[str, Any]]:
        self.validate(resource, body)
        return self.state.create(resource, body, upsert)

    def query(self, resource: str, q: str | None, limit: int, offset: int) -> dict[str, Any]:
        return self.state.query(resource, q, limit, offset)

    def pay(self, resource: str, item_id: int, amount: Decimal) -> dict[str, Any] | None:
        return self.state.pay(resource, item_id, amount)

    def cancel(self, resource: str, item_id: int) -> dict[str, Any] | None:
        return self.state.cancel(resource, item_id)


class _Handler(EmulatorHandler):
    emulator: OracleRestEmulator
    server_version = "Oracle-HTTP-Server (LedgerHub emulator)"

    def _error(self, exc: OracleError) -> None:
        self.send_json(exc.status, exc.body(), ERROR_MEDIA_TYPE)

    def _authorised(self) -> bool:
        em = self.emulator
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return value in em.tokens or value in em.static_tokens
        if scheme.lower() == "basic" and em.username is not None:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user, em.username) and hmac.compare_digest(password, em.password or "")
        return False

    def _route(self) -> tuple[str | None, int | None]:
        path = urlsplit(self.path).path
        if not path.startswith(API_ROOT + "/"):
            return None, None
        parts = path[len(API_ROOT) + 1 :].split("/")
        if parts[0] not in SCHEMA_FILES or len(parts) > 2:
            return None, None
        if len(parts) == 2:
            return (parts[0], int(parts[1])) if parts[1].isdigit() else (None, None)
        return parts[0], None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/_emulator/"):
            self._control_get(url.path)
            return
        if not self._authorised():
            self.send_json(401, {"title": "Unauthorized", "status": "401"}, ERROR_MEDIA_TYPE)
            return
        resource, item_id = self._route()
        if resource is None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
            return
        params = parse_qs(url.query)
        if item_id is None:
            limit = min(int(params.get("limit", ["25"])[0]), 500)
            offset = int(params.get("offset", ["0"])[0])
            self.send_json(
                200,
                self.emulator.query(resource, params.get("q", [None])[0], limit, offset),
                COLLECTION_MEDIA_TYPE,
            )
            return
        with self.emulator.state.lock:
            item = self.emulator.state.items[resource].get(item_id)
        if item is None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
        else:
            self.send_json(200, item, ITEM_MEDIA_TYPE)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except ValueError:
            self.send_json(413, {"title": "Request Entity Too Large", "status": "413"}, ERROR_MEDIA_TYPE)
            return
        if url.path == "/oauth2/v1/token":
            self._token(raw)
            return
        if url.path.startswith("/_emulator/"):
            self._control_post(url.path, raw)
            return
        if not self._authorised():
            self.send_json(401, {"title": "Unauthorized", "status": "401"}, ERROR_MEDIA_TYPE)
            return
        resource, item_id = self._route()
        if resource is None or item_id is not None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != ITEM_MEDIA_TYPE:
            self.send_json(415, {"title": "Unsupported Media Type", "status": "415"}, ERROR_MEDIA_TYPE)
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._error(OracleError(400, "INVALID_JSON", "The request body is not a JSON object."))
            return
        self._create(resource, body, (self.headers.get("Upsert-Mode") or "").lower() == "true")

    def _create(self, resource: str, body: dict[str, Any], upsert: bool) -> None:
        em = self.emulator
        fault: FaultKind | None = em.faults.next()
        plan = em.faults.plan
        if self.fault_before(
            fault,
            error_5xx=lambda: self.send_json(
                500, {"title": "Internal Server Error", "status": "500"}, ERROR_MEDIA_TYPE
            ),
            reject=lambda: self._error(
                OracleError(400, "AP_SUPPLIER_ON_HOLD", "The supplier is on payment hold.")
            ),
        ):
            return
        try:
            status, item = em.create(resource, body, upsert)
        except OracleError as exc:
            self._error(exc)
            return
        if self.fault_after(fault, plan.hang_seconds, plan.slow_seconds):
            return
        self.send_json(
            status,
            item,
            ITEM_MEDIA_TYPE,
            Location=f"{API_ROOT}/{resource}/{item.get('InvoiceId') or item.get('CustomerTransactionId')}",
        )

    def _token(self, raw: bytes) -> None:
        em = self.emulator
        form = parse_qs(raw.decode())
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        client = ""
        if scheme.lower() == "basic":
            client = base64.b64decode(value).decode()
        if form.get("grant_type") != ["client_credentials"] or client != f"{em.client_id}:{em.client_secret}":
            self.send_json(401, {"error": "invalid_client"})
            return
        token = secrets.token_urlsafe(24)
        em.tokens.add(token)
        self.send_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _control_get(self, path: str) -> None:
        if path == "/_emulator/postings":
            self.send_json(
                200, {"postings": self.emulator.postings(), "creates": self.emulator.state.creates}
            )
        elif not self.control_common("GET", path.split("/")[2:], {}):
            self.send_json(404, {"error": "not found"})

    def _control_post(self, path: str, raw: bytes) -> None:
        em = self.emulator
        data = json.loads(raw or b"{}")
        parts = path.split("/")[2:]
        if self.control_common("POST", parts, data):
            return
        if (
            len(parts) == 3
            and parts[0] in SCHEMA_FILES
            and parts[1].isdigit()
            and parts[2] in ("payments", "cancel")
        ):
            if parts[2] == "payments":
                result = em.pay(parts[0], int(parts[1]), Decimal(str(data["amount"])))
            else:
                result = em.cancel(parts[0], int(parts[1]))
            self.send_json(404 if result is None else 200, result or {"error": "not found"})
        else:
            self.send_json(404, {"error": "not found"})


OracleRestEmulator.handler_class = _Handler
