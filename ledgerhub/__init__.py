"""LedgerHub client-side packages that run away from the hub (ADR 0052): `ledgerhub.device`, the device SDK.

Nothing here imports the hub (`hub`, `chaincode`, FastAPI, SQLAlchemy): a meter gateway installs
`ledgerhub[device]` and imports only this package.
"""
