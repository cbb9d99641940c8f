"""The device SDK: sign usage messages as API.md says, queue readings in SQLite, send them in batches.

    from ledgerhub.device import DeviceClient, PemSigner

    client = DeviceClient("https://hub.example", device_id="mri-berlin-01", token="...",
                          signer=PemSigner.from_file("device-key.pem"), queue_path="readings.sqlite")
    client.add("r-000001", metric="scan", quantity="1", timestamp="2026-11-03T09:15:00+01:00")
    report = client.flush()          # sends everything queued; retries with backoff while the hub is away
    for refusal in client.refusals():  # readings the hub refused, with its code and reason
        print(refusal.reading_id, refusal.code, refusal.detail)

Imports only the standard library, `cryptography`, `rfc8785`, `httpx` and (for a PKCS#11 token, lazily)
`python-pkcs11`: `pip install ledgerhub[device]`. See docs/device-sdk.md.
"""

from ledgerhub.device.client import DeviceClient, DeviceConfigError, FlushReport
from ledgerhub.device.queue import QueuedReading, ReadingConflict, ReadingQueue
from ledgerhub.device.signing import MessageSigner, PemSigner, Pkcs11Signer, sign_message

__all__ = [
    "DeviceClient",
    "DeviceConfigError",
    "FlushReport",
    "MessageSigner",
    "PemSigner",
    "Pkcs11Signer",
    "QueuedReading",
    "ReadingConflict",
    "ReadingQueue",
    "sign_message",
]
