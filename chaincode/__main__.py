"""`python -m chaincode`: serve the billing contract as an external (chaincode-as-a-service) chaincode.

Reads CHAINCODE_ID (the package id the peer knows) and CHAINCODE_SERVER_ADDRESS (host:port to listen on),
plus the optional TLS settings of `chaincode.shim.ServerConfig.from_env`, and
CHAINCODE_MAX_CLOCK_SKEW_SECONDS: how far (seconds, default 300) a transaction proposal's timestamp may be
from this host's clock before the contract refuses to endorse it (`tx_timestamp_skew`, ADR 0027).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from chaincode.shim import ChaincodeServer, ServerConfig


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # imported here so a missing or broken contract fails with a message, after logging is set up
    from chaincode.clock import ClockBound
    from chaincode.contract import bounded

    try:
        config = ServerConfig.from_env()
        clock_bound = ClockBound.from_env()
    except (ValueError, OSError) as exc:  # missing/bad variables, unreadable TLS files
        print(f"chaincode: {exc}", file=sys.stderr)
        return 2
    if clock_bound is None:
        logging.getLogger("chaincode").warning("proposal timestamps are not bounded (skew check off)")
    server = ChaincodeServer(bounded(clock_bound), config)
    try:
        server.start()
    except OSError as exc:  # address taken or not bindable: a message and exit 2, not a traceback
        server.stop(grace=None)
        print(f"chaincode: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
