"""Prometheus metrics of the delivery engine, on the app's own registry: deliveries by state (read from the
outbox at scrape time, so every replica reports the shared truth) and ERP call latency by connector, action
and outcome (observed by this process's dispatcher)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.delivery.models import STATES, Delivery
from hub.metrics import Metrics


class DeliveryStateCollector(Collector):
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("ledgerhub_deliveries", "ERP deliveries by state", labels=["state"])
        with self.db() as session:
            query = select(Delivery.state, func.count()).group_by(Delivery.state)
            counts = dict(session.execute(query).all())
        for state in STATES:
            family.add_metric([state], float(counts.get(state, 0)))
        yield family


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry, db: sessionmaker[Session]) -> None:
        registry.register(DeliveryStateCollector(db))
        self.erp_latency = Histogram(
            "ledgerhub_erp_call_seconds", "ERP calls by connector, action (deliver/lookup) and outcome",
            ["connector", "action", "outcome"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry,
        )

    def observe(self, connector: str, action: str, outcome: str, seconds: float) -> None:
        self.erp_latency.labels(connector, action, outcome).observe(seconds)


def attach(metrics: Metrics | None, db: sessionmaker[Session]) -> DeliveryMetrics | None:
    """The delivery metrics on the app's registry (None when the app keeps no metrics)."""
    return DeliveryMetrics(metrics.registry, db) if metrics is not None else None
