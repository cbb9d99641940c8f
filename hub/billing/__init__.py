"""Billing use cases over the chaincode, and the one typed way to call it (`client.ContractClient`)."""
