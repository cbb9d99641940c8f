"""How fast the portal's daily series is on a big period: before (every reading read back from the ledger
and bucketed, as the endpoint did until ADR 0044) and after (the daily aggregates), in one run.

    python -m hub.portal.bench [--readings 1000000]

Loads the readings into an embedded ledger (signed messages, RecordUsage transactions as the ingester
writes them), folds them into the daily aggregates once (timed: that is what the event stream does as
readings arrive), then times each way of answering, wall clock and CPU, and prints the ratio. Figures,
never assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from hub.bench.scenarios import _embedded
from hub.bench.traffic import CUSTOMER, PROVIDER, Device, bench_contract, messages
from hub.billing.client import ContractClient
from hub.config import Settings, TokenGrant
from hub.portal.series import daily_series

CONTRACT = "ctr-portal-bench"
PERIOD = "2020-01"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds over `repeat` calls, and the last answer."""
    walls, cpus, answer = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        answer = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), answer


def load(ledger: Any, readings: int, per_message: int = 1000, per_tx: int = 20) -> int:
    client = ContractClient.of(ledger)
    device = Device.new("portal-bench-dev")
    client.register_asset(device.asset(), as_org=PROVIDER)
    client.propose_contract(bench_contract(CONTRACT, [device], dt.date(2020, 1, 1)), as_org=PROVIDER)
    client.accept_contract(CONTRACT, as_org=CUSTOMER)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    per_message = min(per_message, readings)
    batch: list[dict[str, Any]] = []
    loaded = 0
    for message in messages(device, readings // per_message, per_message, start=start,
                            end=start + dt.timedelta(days=31), prefix="p"):
        batch.append(message)
        if len(batch) == per_tx:
            client.record_usage(batch, as_org=PROVIDER)
            loaded += per_tx * per_message
            batch = []
    if batch:
        client.record_usage(batch, as_org=PROVIDER)
        loaded += len(batch) * per_message
    return loaded


def run(readings: int, repeat: int = 3) -> dict[str, Any]:
    from hub.api.app import create_app

    with tempfile.TemporaryDirectory(prefix="ledgerhub-portal-bench-") as tmp:
        ledger = _embedded(Path(tmp) / "ledger")
        try:
            started = time.perf_counter()
            loaded = load(ledger, readings)
            load_seconds = time.perf_counter() - started
            settings = Settings(data_dir=Path(tmp) / "data", scheduler_enabled=False,
                                tokens={"tok-c": TokenGrant(org=CUSTOMER, role="customer")})
            app = create_app(settings, ledger, background=False)
            with TestClient(app) as client:
                services = app.state.services
                contracts = ContractClient.of(services.gateway)
                contract = contracts.get_contract(CONTRACT, as_org=CUSTOMER)

                def before() -> dict[str, Any]:  # what the endpoint did until ADR 0044
                    rows = contracts.get_readings(CONTRACT, PERIOD, as_org=CUSTOMER).readings
                    return daily_series(rows, contract.raw["metrics"], contract.timezone, PERIOD)

                fold_w, fold_c = time.perf_counter(), time.process_time()
                folded = services.usage_days.catch_up()
                fold_wall, fold_cpu = time.perf_counter() - fold_w, time.process_time() - fold_c
                headers = {"Authorization": "Bearer tok-c"}
                url = f"/v1/contracts/{CONTRACT}/usage/series?period={PERIOD}"

                def after() -> dict[str, Any]:
                    response = client.get(url, headers=headers)
                    response.raise_for_status()
                    return response.json()

                def cost() -> dict[str, Any]:
                    response = client.get(f"/v1/contracts/{CONTRACT}/usage/cost-series?period={PERIOD}",
                                          headers=headers)
                    response.raise_for_status()
                    return response.json()

                old_wall, old_cpu, old = timed(before, repeat)
                new_wall, new_cpu, new = timed(after, repeat)
                cost_wall, cost_cpu, _ = timed(cost, repeat)
                etag = client.get(url, headers=headers).headers["etag"]
                same_wall, same_cpu, _ = timed(
                    lambda: client.get(url, headers={**headers, "If-None-Match": etag}), repeat)
                same = all(old["metrics"][m]["values"] == new["metrics"][m]["values"] for m in old["metrics"])
        finally:
            ledger.close()
    return {
        "readings": loaded, "load_seconds": round(load_seconds, 1), "folded": folded,
        "fold_seconds": round(fold_wall, 2), "fold_cpu_seconds": round(fold_cpu, 2),
        "before_seconds": round(old_wall, 4), "before_cpu_seconds": round(old_cpu, 4),
        "after_seconds": round(new_wall, 4), "after_cpu_seconds": round(new_cpu, 4),
        "cost_series_seconds": round(cost_wall, 4), "cost_series_cpu_seconds": round(cost_cpu, 4),
        "not_modified_seconds": round(same_wall, 4), "not_modified_cpu_seconds": round(same_cpu, 4),
        "speedup": round(old_wall / new_wall, 1) if new_wall else None, "same_answer": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run(args.readings, args.repeat)
    print(json.dumps(result, indent=2))
    print(f"daily series over {result['readings']:,} readings: {result['before_seconds']} s reading every "
          f"reading, {result['after_seconds']} s from daily aggregates ({result['speedup']}x); "
          f"cost series {result['cost_series_seconds']} s; "
          f"unchanged (304) {result['not_modified_seconds']} s; "
          f"folding them in once: {result['fold_seconds']} s; same answer: {result['same_answer']}")


if __name__ == "__main__":
    main()
