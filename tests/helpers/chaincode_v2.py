"""The "next version" of the billing chaincode for the live-upgrade test (ADR 0055): the project's contract
with one small, test-only data change, served like `python -m chaincode`
(`python -m tests.helpers.chaincode_v2`).

The change: contracts get a `payment_terms_days` field with a default of 30.
- `ProposeContract` under v2 stores the field (30 unless the proposal names it), so records written by v2
  carry it;
- `GetContract` under v2 answers with the field, defaulting it to 30 for records written by v1 that lack it
  (no migration of world state: the new version reads the old data as it is).
Every other function is v1's, byte for byte, so readings sent during the switch endorse the same on a peer
still running v1 as on one already running v2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from chaincode.contract import Invoke
from chaincode.stub import Stub

DEFAULT_TERMS_DAYS = 30


def v2(inner: Invoke) -> Invoke:
    def call(stub: Stub, fn: str, args: Sequence[bytes | str]) -> bytes:
        if fn == "ProposeContract" and args:
            body = json.loads(args[0])
            body.setdefault("payment_terms_days", DEFAULT_TERMS_DAYS)
            args = [json.dumps(body), *args[1:]]
        out = inner(stub, fn, args)
        if fn == "GetContract":
            from chaincode.model import canonical

            doc = json.loads(out)
            doc.setdefault("payment_terms_days", DEFAULT_TERMS_DAYS)
            out = canonical(doc)
        return out

    return call


def main() -> int:
    import chaincode.__main__ as server_main
    import chaincode.contract as contract

    original = contract.bounded
    contract.bounded = lambda clock_bound: v2(original(clock_bound))  # type: ignore[assignment]
    return server_main.main()


if __name__ == "__main__":
    sys.exit(main())
