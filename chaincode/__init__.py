"""LedgerHub chaincode: the billing contract every party runs."""
