"""A device process for the SDK crash test: `python -m tests.helpers.device_sender URL QUEUE KEY N PERIOD`.

It queues readings r-00000..r-{N-1} of PERIOD (quantity i % 3 + 1, so a lost or doubled reading changes
the sum) in chunks, as a meter would, and flushes them to the hub in batches of 7 through
`ledgerhub.device`. It imports nothing of the hub. Test knobs (environment):
- SENDER_HOLD_REQUEST=k: before the k-th POST leaves, write `QUEUE.held` and sleep (to be killed with the
  message formed and recorded locally but not sent);
- SENDER_HOLD_RESPONSE=k: after the k-th answer arrived, before it is recorded, the same (the hub has
  committed, the device does not know it yet).
Prints `done <counts as JSON>` when everything queued has a final answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx

from ledgerhub.device import DeviceClient, PemSigner

DEVICE = "dev-sdk-crash"


def main(argv: list[str]) -> None:
    url, queue, key, n, period = argv[0], Path(argv[1]), argv[2], int(argv[3]), argv[4]
    held = queue.with_suffix(".held")
    counts = {"request": 0, "response": 0}

    def hold(kind: str) -> None:
        counts[kind] += 1
        if str(counts[kind]) == os.environ.get(f"SENDER_HOLD_{kind.upper()}"):
            held.write_text(kind)
            time.sleep(600)

    http = httpx.Client(timeout=30, event_hooks={"request": [lambda _r: hold("request")],
                                                 "response": [lambda _r: hold("response")]})
    client = DeviceClient(url, device_id=DEVICE, token="tok-device", signer=PemSigner.from_file(key),
                          queue_path=queue, batch_size=7, http=http, backoff_base=0.05, backoff_cap=0.5)
    # the meter hands readings over in chunks; re-adding them after a restart is a no-op
    for start in range(0, n, 25):
        client.add_many({"id": f"r-{i:05d}", "metric": "scan", "quantity": str(i % 3 + 1),
                         "timestamp": f"{period}-{1 + i % 27:02d}T{8 + i % 10:02d}:{i % 60:02d}:00+01:00"}
                        for i in range(start, min(n, start + 25)))
    client.flush()
    print("done " + json.dumps(client.status()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
