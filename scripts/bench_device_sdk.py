"""`.venv/bin/python scripts/bench_device_sdk.py`: what the device SDK costs on top of posting messages.

Against the hub in this process (embedded ledger, SoftHSM2 endorsers): the same number of readings sent
(a) through the SDK (queued in SQLite with synchronous=FULL, signed batches of 200, answers recorded) and
(b) as pre-built signed messages of 200 posted directly; then the queue alone (add + form) without HTTP.
Prints wall and CPU seconds of this process (hub included) and the ratios, all from the same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledgerhub.device import DeviceClient, PemSigner
from ledgerhub.device.queue import ReadingQueue
from tests.helpers.api import (
    TOKENS,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    setup_contract,
    ts,
)
from tests.helpers.chaincode import DEVICE_ID, make_device_key, signed_message

N, BATCH = 5000, 200
DEVICE_TOKEN = next(t for t, g in TOKENS.items() if g["role"] == "device" and g["org"] == "ProviderMSP")


def readings(prefix: str, period: str) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i:06d}", "metric": "scan", "quantity": "1",
             "timestamp": ts(period, 1 + i % 27, 8 + i % 10, i % 60)} for i in range(N)]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sdk-"))
    ledger = embedded_ledger(tmp / "ledger")
    period, _ = last_month()
    key = make_device_key("bench-sdk")
    try:
        with hub_client(hub_settings(tmp), ledger, background=False) as client:
            setup_contract(client, key)
            c0, w0 = time.process_time(), time.perf_counter()
            device = DeviceClient(None, device_id=DEVICE_ID, token=DEVICE_TOKEN,
                                  signer=PemSigner(key.private_key), queue_path=tmp / "queue.sqlite",
                                  http=client, batch_size=BATCH)
            sdk_readings = readings("sdk", period)
            for start in range(0, N, 100):
                device.add_many(sdk_readings[start:start + 100])
            report = device.flush()
            c1, w1 = time.process_time(), time.perf_counter()
            assert report.delivered == N, report
            raw = readings("raw", period)
            for start in range(0, N, BATCH):
                message = signed_message(key, raw[start:start + BATCH], message_id=str(uuid.uuid4()))
                r = client.post("/v1/usage", json=message, headers=auth(DEVICE_TOKEN))
                assert r.status_code == 202, r.text
            c2, w2 = time.process_time(), time.perf_counter()
        queue = ReadingQueue(tmp / "queue-only.sqlite")
        q0 = time.process_time()
        alone = readings("q", period)
        for start in range(0, N, 100):
            queue.add(alone[start:start + 100])
        while queue.form_message(DEVICE_ID, BATCH):
            pass
        q1 = time.process_time()
    finally:
        ledger.close()
    print(f"SDK: {N} readings in {report.messages} messages: {w1 - w0:.2f} s wall, {c1 - c0:.2f} CPU-s")
    print(f"direct posts of the same batches: {w2 - w1:.2f} s wall, {c2 - c1:.2f} CPU-s")
    print(f"ratio SDK/direct: wall {(w1 - w0) / (w2 - w1):.2f}x, CPU {(c1 - c0) / (c2 - c1):.2f}x")
    print(f"queue alone (add in chunks of 100, form batches of {BATCH}): {q1 - q0:.3f} CPU-s, "
          f"{(q1 - q0) / N * 1e6:.0f} us CPU a reading")


if __name__ == "__main__":
    main()
