"""The hub's use cases over the contract (forecast, visibility, the reads the API and the portal share) and
the one typed way to call the chaincode (`client.ContractClient`)."""
