"""What every ERP emulator shares: a threaded HTTP server with a start/stop lifecycle, and a request
handler with the few primitives fault injection needs (answer, answer JSON, drop the connection, reset it).

Emulators use the standard library's server on purpose: a dropped response after a posting (the nastiest
real failure) needs the handler to close the socket without writing, which an ASGI app cannot do.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class EmulatorServer:
    """Serves `handler_class` (with `handler_class.emulator = self`) on a free or given port."""

    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "erp-emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> Self:
        handler = type("Handler", (self.handler_class,), {"emulator": self})
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        server.block_on_close = False
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        """Sleep that ends early when the emulator stops (hanging requests must not block shutdown)."""
        self._stopping.wait(seconds)


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # no stderr access log
        return

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, value: Any, content_type: str = "application/json", **headers: str):
        self.send_body(status, json.dumps(value, indent=1).encode(), content_type, headers)

    def read_body(self, limit: int = 10_000_000) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def abort(self, reset: bool) -> None:
        """Close without an answer; with `reset`, send a TCP RST instead of a FIN."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- the control endpoints every emulator has (not the ERP's own API) ------------------------------

    def control_common(self, method: str, parts: list[str], data: dict[str, Any]) -> bool:
        """`GET|POST /_emulator/faults` (snapshot / apply a plan) and `POST /_emulator/reset` (fresh
        state, no faults). `parts` is the path after `/_emulator/`. True when the request was answered."""
        em = self.emulator  # type: ignore[attr-defined]
        if parts == ["faults"]:
            if method == "POST":
                em.faults.apply(data)
            self.send_json(200, em.faults.snapshot())
        elif parts == ["reset"] and method == "POST":
            em.reset()
            self.send_json(200, {"reset": True})
        else:
            return False
        return True

    # --- acting out injected faults (connectors.emulators.faults), the same way in every emulator -------

    def fault_before(
        self, fault: str | None, *, error_5xx: Callable[[], None], reject: Callable[[], None]
    ) -> bool:
        """Faults that happen before the request is processed; True when the request is finished."""
        if fault == "reset":
            self.abort(reset=True)
        elif fault == "error_5xx":
            error_5xx()
        elif fault == "reject":
            reject()
        else:
            return False
        return True

    def fault_after(self, fault: str | None, hang_seconds: float, slow_seconds: float) -> bool:
        """Faults after the posting was made; True when no answer must be sent (the client never learns)."""
        if fault in ("drop_after_post", "timeout"):
            if fault == "timeout":
                self.emulator.wait(hang_seconds)  # type: ignore[attr-defined]
            self.abort(reset=False)
            return True
        if fault == "slow":
            self.emulator.wait(slow_seconds)  # type: ignore[attr-defined]
        return False
