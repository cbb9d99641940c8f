"""LedgerHub hub: API, ingestion, delivery, keys, audit."""
