"""Import of one camt.054 with N credits (each quoting its own invoice's RF) on the embedded ledger through
the HTTP API: entries recorded per second, and the same file again (all duplicates), from the same run.

    PYTHONPATH=. .venv/bin/python scripts/measure_bank_import.py 100
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from chaincode import creditor_ref
from tests.helpers.api import (
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.camt import E, camt
from tests.helpers.chaincode import make_device_key, reading

N = int(sys.argv[1])
tmp = Path(tempfile.mkdtemp())
ledger = embedded_ledger(tmp / "ledger")
with hub_client(hub_settings(tmp), ledger) as client:
    period, _ = last_month()
    entries = []
    for n in range(N):
        key = make_device_key(f"m-{n}")
        c = setup_contract(client, key, id=f"ctr-m-{n}", assets=[f"mri-m-{n}"])
        message = usage(key, f"mm-{n}", [reading("r-1", "scan", "4", ts(period, 5))], device_id=f"mri-m-{n}")
        assert post_usage(client, message).status_code == 202
        closed = client.post(f"/v1/contracts/{c['id']}/periods/{period}/close", headers=auth("tok-operator"))
        inv = closed.json()
        posting = {"invoice_id": inv["id"], "target": "provider", "system": "s", "document_id": str(n),
                   "delivery_id": f"d{n}"}
        ledger.submit("RecordErpPosting", [json.dumps(posting)], as_org="ProviderMSP")
        entries.append(E(f"B-{n}", inv["total"], rf=creditor_ref.for_invoice(inv["id"])))
    data = camt(entries)
    h = {**auth("tok-operator"), "Content-Type": "application/xml"}
    t0 = time.perf_counter()
    r = client.post("/v1/bank-statements", content=data, headers=h).json()
    t1 = time.perf_counter()
    r2 = client.post("/v1/bank-statements", content=data, headers=h).json()
    t2 = time.perf_counter()
    print(f"N={N} file={len(data)} bytes: first import recorded={len(r['recorded'])} in {t1 - t0:.2f} s = "
          f"{len(r['recorded']) / (t1 - t0):.1f} entries/s; second import duplicates={r2['duplicates']} "
          f"recorded={len(r2['recorded'])} in {t2 - t1:.2f} s; "
          f"ratio first/second {(t1 - t0) / (t2 - t1):.1f}x")
ledger.close()
