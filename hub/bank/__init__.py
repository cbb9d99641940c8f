"""Bank rails: ISO 20022 statements (camt.053/054) matched to invoices and recorded on the ledger."""
