"""The embedded ledger: an in-process, single-node network with Fabric's transaction shape."""

from .ledger import EmbeddedLedger, PreparedTx

__all__ = ["EmbeddedLedger", "PreparedTx"]
