"""The webhook and delivery sections reach the engine (ADR 0059): `webhooks.timeout_seconds` bounds one POST
to a receiver that does not answer, and `delivery.max_attempts` / `delivery.backoff_base` set the retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers.api import embedded_ledger, hub_client, hub_settings
from tests.helpers.webhooks import LOCAL_RECEIVERS
from tests.integration.test_alert_webhooks import deliveries, raise_budget_alerts

pytestmark = pytest.mark.integration


class SlowReceiver:
    """Answers 200, but only after 3 s: later than the configured timeout, sooner than the default (10 s)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests += 1
                if receiver.released.wait(3):
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ledgerhub"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ledger = embedded_ledger(tmp_path / "ledger")
    # the legacy flat keys (LOCAL_RECEIVERS) and the section's own key, in one set of settings
    settings = hub_settings(tmp_path, **LOCAL_RECEIVERS, webhooks={"timeout_seconds": 0.5},
                            delivery={"max_attempts": 2, "backoff_base": 0.01, "backoff_cap": 0.01})
    assert settings.webhooks.allow_private and settings.webhooks.timeout_seconds == 0.5
    with hub_client(settings, ledger, scheduler=False, areas=("delivery",)) as c:
        yield c
    ledger.close()


def test_a_slow_receiver_times_out_after_the_configured_seconds_and_retries_as_configured(
    client: TestClient,
) -> None:
    receiver = SlowReceiver()
    try:
        raise_budget_alerts(client, receiver.url)
        client.app.state.services.delivery.run_until_idle()
        rows = deliveries(client)
        assert len(rows) == 2 and all(r["state"] == "dead_letter" for r in rows)
        assert all(r["attempts"] == 2 for r in rows)  # delivery.max_attempts
        assert receiver.requests == 4  # each try reached the receiver and was given up on
        assert all("did not answer" in r["last_error"]["message"] for r in rows)
    finally:
        receiver.close()
