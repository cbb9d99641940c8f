"""TLS for `ledgerhub serve`: certificate and key from the CLI, else from the settings (`Settings.tls`:
LEDGERHUB_TLS_CERT / LEDGERHUB_TLS_KEY, or `"tls": {"cert": ..., "key": ...}` in the settings file).

The paths matter only to the process that binds the socket: `create_app` never looks at them (a proxy may
terminate TLS instead); `serve` hands `settings.tls` here.
The context is uvicorn's own, with one change: nothing older than TLS 1.2 is accepted (TLS 1.0/1.1 are
deprecated by RFC 8996). A server with a certificate serves HTTPS only; plaintext requests fail the handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config import TlsSettings

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
                        tls: TlsSettings | None = None) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config`: {} for plain HTTP, else the files and a hardening factory.
    Each file from the CLI option when given, else from `tls` (the settings)."""
    tls = tls or TlsSettings()
    cert = certfile or tls.cert
    key = keyfile or tls.key
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise TlsConfigError("TLS needs both a certificate and a key (--ssl-certfile/--ssl-keyfile or "
                             "LEDGERHUB_TLS_CERT/LEDGERHUB_TLS_KEY)")
    for path in (cert, key):
        if not path.is_file():
            raise TlsConfigError(f"TLS file not found: {path}")
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_context_factory": _factory}
