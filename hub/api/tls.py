"""TLS for `ledgerhub serve`: certificate and key from the CLI or LEDGERHUB_TLS_CERT / LEDGERHUB_TLS_KEY.

Why here and not in Settings: the paths matter only to the process that binds the socket, and keeping them
out of `Settings` keeps `create_app` free of transport concerns (a proxy may terminate TLS instead).
The context is uvicorn's own, with one change: nothing older than TLS 1.2 is accepted (TLS 1.0/1.1 are
deprecated by RFC 8996). A server with a certificate serves HTTPS only; plaintext requests fail the handshake.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


class TlsConfigError(ValueError):
    pass


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_TLS
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    return context


def _factory(_config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    return harden(default())


def uvicorn_tls_options(certfile: Path | None = None, keyfile: Path | None = None,
                        environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config`: {} for plain HTTP, else the files and a hardening factory."""
    env = os.environ if environ is None else environ
    cert = certfile or (Path(env["LEDGERHUB_TLS_CERT"]) if env.get("LEDGERHUB_TLS_CERT") else None)
    key = keyfile or (Path(env["LEDGERHUB_TLS_KEY"]) if env.get("LEDGERHUB_TLS_KEY") else None)
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise TlsConfigError("TLS needs both a certificate and a key (--ssl-certfile/--ssl-keyfile or "
                             "LEDGERHUB_TLS_CERT/LEDGERHUB_TLS_KEY)")
    for path in (cert, key):
        if not path.is_file():
            raise TlsConfigError(f"TLS file not found: {path}")
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_context_factory": _factory}
