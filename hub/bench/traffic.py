"""Signed device traffic for benchmarks: devices, a contract, and usage messages signed the way devices sign
(ECDSA P-256 over RFC 8785 JSON). Messages are signed before the clock starts, so what a run measures is the
hub and the ledger, not the load generator's signing."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaincode.model import canonical

PROVIDER, CUSTOMER = "ProviderMSP", "CustomerMSP"


@dataclass
class Device:
    device_id: str
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, device_id: str) -> Device:
        return cls(device_id, ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def asset(self) -> dict[str, Any]:
        return {"id": self.device_id, "description": "benchmark device", "public_key": self.public_pem}

    def sign(self, message: dict[str, Any]) -> dict[str, Any]:
        # the chaincode's encoder: the same RFC 8785 bytes as `rfc8785.dumps`, several times faster, so
        # preparing a million readings does not dominate a run
        signature = self.key.sign(canonical(message), ec.ECDSA(hashes.SHA256()))
        return {**message, "signature": base64.b64encode(signature).decode()}


def month_start(moment: dt.datetime) -> dt.datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def bench_contract(contract_id: str, devices: list[Device], start: dt.date) -> dict[str, Any]:
    """UTC timezone so every reading's period is plain to see; per-unit and graduated charges."""
    return {
        "id": contract_id,
        "provider": PROVIDER,
        "customer": CUSTOMER,
        "assets": [d.device_id for d in devices],
        "currency": "EUR",
        "timezone": "UTC",
        "start": start.isoformat(),
        "end": None,
        "metrics": {
            "scan": {"aggregation": "sum", "unit": "scan"},
            "kwh": {"aggregation": "sum", "unit": "kWh"},
        },
        "charges": [
            {"id": "platform", "model": "flat", "amount": "500.00"},
            {
                "id": "scans",
                "model": "graduated",
                "metric": "scan",
                "tiers": [{"up_to": "1000", "unit_price": "2.50"}, {"up_to": None, "unit_price": "1.75"}],
            },
            {"id": "energy", "model": "per_unit", "metric": "kwh", "unit_price": "0.31"},
        ],
        "minimum_commitment": None,
        "maximum": None,
        "tax": {"rate": "0.19", "category": "S"},
        "erp": {"provider": "sap-soap", "customer": "oracle-rest"},
    }


def messages(
    device: Device,
    count: int,
    readings_per_message: int,
    *,
    start: dt.datetime,
    end: dt.datetime,
    prefix: str,
) -> Iterator[dict[str, Any]]:
    """`count` signed messages whose readings are spread evenly over [start, end)."""
    total = max(count * readings_per_message, 1)
    span = (end - start).total_seconds()
    n = 0
    for m in range(count):
        readings = []
        for _ in range(readings_per_message):
            at = start + dt.timedelta(seconds=span * n / total)
            metric = "scan" if n % 2 == 0 else "kwh"
            readings.append(
                {
                    "id": f"{prefix}-{n:09d}",
                    "metric": metric,
                    "quantity": "1" if metric == "scan" else "0.75",
                    "timestamp": at.isoformat(timespec="seconds"),
                }
            )
            n += 1
        yield device.sign(
            {
                "device_id": device.device_id,
                "message_id": f"{prefix}-m{m}-{uuid.uuid4().hex[:8]}",
                "readings": readings,
            }
        )
