"""A webhook receiver on loopback for tests that need a real HTTP endpoint the hub posts alerts to."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# the receivers listen on 127.0.0.1 over plain http: the operator must allow that explicitly (ADR 0030)
LOCAL_RECEIVERS = {"webhook_allow_private": True, "webhook_allow_http": True}


class Receiver:
    """A webhook endpoint on loopback that answers `script` statuses in order, then 200 (with `body`), and
    keeps (headers, body, status) of every request."""

    def __init__(self, script: list[int] | None = None, body: bytes = b"") -> None:
        self.script = list(script or [])
        self.answer = body
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ledgerhub"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
