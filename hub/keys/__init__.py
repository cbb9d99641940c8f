"""Signers and key custody (HSM via PKCS#11; software keys for tests)."""

from hub.keys.signer import Signer, SoftwareSigner

__all__ = ["Signer", "SoftwareSigner"]
