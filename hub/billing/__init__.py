"""The hub's use cases over the contract: forecast, visibility and the reads the API and the portal share."""
