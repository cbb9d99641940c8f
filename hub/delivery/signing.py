"""Signing the invoice documents the dispatcher hands to connectors, failing loudly (ADR 0060).

The provider's document key `documents-<org>` lives in the hub's key area: the PKCS#11 token with
`LEDGERHUB_SIGNER=pkcs11`, else software keys under `$LEDGERHUB_DATA_DIR/keys`. The hub creates that key
for its own provider org when it opens the key area.

- **Not configured** — the key area holds no `documents-<provider>` key (an invoice of a provider org this
  hub keeps no document key for): the document goes unsigned, as before, logged at INFO.
- **Configured but failing** — the key area cannot be opened (a wrong or missing HSM PIN, a missing token
  or module, an unreadable key registry), the key is disabled, or the HSM refuses to sign, for the JSON
  signature or later for the XML one: `DocumentSigningFailed`, which dead-letters the delivery as
  `document_signing_failed` (logged at ERROR). Nothing unsigned is sent in place of a signed document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from connectors.base import ConnectorConfigError
from hub.keys import build_key_manager
from hub.keys.documents import sign_invoice_json, sign_xml

log = logging.getLogger("ledgerhub.delivery")
CODE = "document_signing_failed"


class DocumentSigningFailed(ConnectorConfigError):
    """Document signing is configured and failed: the delivery is dead-lettered, nothing is sent."""

    code = CODE


def _reason(exc: BaseException) -> str:
    """`<code>: <message>` of a key-area error (HsmError and KeyManagerError carry a code, never a PIN)."""
    code = getattr(exc, "code", None)
    return f"{code}: {exc}" if isinstance(code, str) else f"{type(exc).__name__}: {exc}"


def document_signing(settings: Any, invoice: Mapping[str, Any]
                     ) -> tuple[dict[str, str] | None, Callable[[bytes], bytes] | None]:
    """The provider's detached JWS over the JSON invoice and a function that signs an XML rendering with
    the same key; `(None, None)` when this hub keeps no document key for the provider. Raises
    `DocumentSigningFailed` when signing is configured and does not work (module docstring)."""
    name = f"documents-{invoice['provider']}"
    try:
        manager = build_key_manager(settings)
        held = name in manager.names()
    except Exception as exc:
        raise DocumentSigningFailed(f"document signing failed: the key area cannot be opened "
                                    f"({_reason(exc)})") from exc
    if not held:
        log.info("invoice document not signed: no %s key in the key area", name,
                 extra={"invoice_id": invoice.get("id")})
        return None, None
    try:
        signer = manager.signer(name, "invoice-document")
        jws = sign_invoice_json(invoice, signer)
    except Exception as exc:
        raise DocumentSigningFailed(f"document signing failed: {name} ({_reason(exc)})") from exc

    def sign(xml: bytes) -> bytes:
        try:
            return sign_xml(xml, signer)
        except Exception as exc:
            raise DocumentSigningFailed(f"document signing failed: {name}, XML ({_reason(exc)})") from exc

    return {"jws": jws, "kid": signer.key_id}, sign
