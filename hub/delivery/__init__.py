"""ERP delivery: outbox rows per invoice and target, a dispatcher with retries, backoff, circuit breaker
and dead letters, write-back of postings to the ledger, and payment reconciliation."""
