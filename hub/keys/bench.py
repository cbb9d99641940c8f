"""Signing throughput: PKCS#11 (SoftHSM2) vs in-process software keys, in one run.

`python -m hub.keys.bench --count 5000 --threads 1` (or `ledgerhub keys bench`). It makes its own
throw-away SoftHSM token in a temp dir, so it touches no configured token. Reported: raw signer
(DER + low-S included), and through the key manager (status check + audit log record + background
flush). A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hub.keys.signer import Signer


def measure(signer: Signer, count: int, threads: int = 1) -> float:
    """Signatures per second over `count` signatures per thread."""
    digests = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(min(count, 1000))]

    def work() -> None:
        for i in range(count):
            signer.sign(digests[i % len(digests)])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return count * threads / (time.perf_counter() - start)


def run_bench(count: int = 5000, threads: int = 1) -> dict[str, Any]:
    from hub.keys.manager import KeyManager, Pkcs11Backend, SoftwareBackend
    from hub.keys.pkcs11 import SOFTHSM_MODULE, token_session
    from hub.keys.softhsm import ensure_softhsm_conf, init_token

    with tempfile.TemporaryDirectory(prefix="ledgerhub-bench-") as tmp:
        base = Path(tmp)
        pin = secrets.token_hex(8)
        conf = ensure_softhsm_conf(base / "softhsm")
        init_token(conf, "bench", pin, SOFTHSM_MODULE)
        token = token_session(SOFTHSM_MODULE, "bench", pin)
        hsm = KeyManager(base / "hsm-keys", Pkcs11Backend(token))
        sw = KeyManager(base / "sw-keys", SoftwareBackend(base / "sw-keys" / "software"))
        for m in (hsm, sw):
            m.ensure_org_keys(["BenchMSP"])
        results = {
            "count_per_thread": count,
            "threads": threads,
            "cpus": os.cpu_count(),
            "pkcs11_raw": measure(hsm._backend_signer(hsm.version_info("endorser-BenchMSP")), count, threads),
            "software_raw": measure(sw._backend_signer(sw.version_info("endorser-BenchMSP")), count, threads),
            "pkcs11_managed": measure(hsm.signer("endorser-BenchMSP", "bench"), count, threads),
            "software_managed": measure(sw.signer("endorser-BenchMSP", "bench"), count, threads),
        }
        hsm.close()
        sw.close()
        results["audit_flushes_pkcs11"] = hsm.audit.flushes
    return {k: round(v) if isinstance(v, float) else v for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(run_bench(args.count, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
