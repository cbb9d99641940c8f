"""Prometheus metrics of one hub app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.readings_accepted = Counter(
            "ledgerhub_readings_accepted", "Readings committed to the ledger", registry=r
        )
        self.readings_rejected = Counter(
            "ledgerhub_readings_rejected", "Readings refused (edge or chaincode)", ["code"], registry=r
        )
        self.readings_duplicate = Counter(
            "ledgerhub_readings_duplicate", "Readings skipped as already recorded", registry=r
        )
        self.messages = Counter(
            "ledgerhub_usage_messages", "Usage messages answered, by outcome", ["outcome"], registry=r
        )
        self.batch_size = Histogram(
            "ledgerhub_usage_batch_messages",
            "Usage messages per RecordUsage transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.queue_depth = Gauge("ledgerhub_usage_queue_depth", "Usage messages waiting", registry=r)
        self.ledger_latency = Histogram(
            "ledgerhub_ledger_call_seconds",
            "Latency of ledger calls, by kind and function",
            ["kind", "fn"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ledger_errors = Counter(
            "ledgerhub_ledger_errors", "Ledger call failures, by error class", ["error"], registry=r
        )
        self.invoices_closed = Counter(
            "ledgerhub_periods_closed", "Billing periods closed, by trigger", ["trigger"], registry=r
        )
        self.projected_events = Counter(
            "ledgerhub_projected_events", "Ledger events applied to the read models", ["name"], registry=r
        )
