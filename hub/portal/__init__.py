"""The customer portal: usage and cost to date, forecast, invoices, proofs and early warnings."""
