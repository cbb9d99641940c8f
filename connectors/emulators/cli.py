"""`ledgerhub emulators`: start the local ERP emulators (SAP SOAP, SAP OData, Oracle REST) on configurable
ports, print their endpoints, and serve until Ctrl-C (or `--duration`).

The hub CLI mounts this `app`; it also runs alone: `python -m connectors.emulators.cli --help`.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import typer

from connectors.emulators.faults import ALL_FAULTS, FaultInjector, FaultPlan
from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_odata import SapODataEmulator
from connectors.emulators.sap_soap import SapSoapEmulator

app = typer.Typer(help="Local SAP / Oracle emulators for the demo and tests, with fault injection.",
                  invoke_without_command=True, no_args_is_help=False)

# name -> emulator class (all three ship with the connectors)
EMULATORS: dict[str, type] = {
    "sap-soap": SapSoapEmulator,
    "sap-odata": SapODataEmulator,
    "oracle-rest": OracleRestEmulator,
}


def start_emulators(host: str, ports: dict[str, int], faults: FaultPlan,
                    sap_credentials: tuple[str, str] | None = None) -> list[Any]:
    """Start every emulator named in `ports`; returns the running servers."""
    running = []
    for name, port in ports.items():
        cls = EMULATORS[name]
        kwargs: dict[str, Any] = {"faults": FaultInjector(faults)}
        if name == "sap-soap" and sap_credentials is not None:
            kwargs.update(username=sap_credentials[0], password=sap_credentials[1])
        running.append((name, cls(host, port, **kwargs).start()))
    return running


def describe(name: str, server: Any) -> dict[str, str]:
    info = {"name": name, "base_url": server.base_url}
    for attribute in ("endpoint", "wsdl_url", "service_url"):
        value = getattr(server, attribute, None)
        if isinstance(value, str):
            info[attribute] = value
    return info


@app.callback()
def emulators(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    sap_port: int = typer.Option(8301, help="SAP SOAP journal entry emulator port (0: any free port)"),
    odata_port: int = typer.Option(8302, help="SAP OData emulator port"),
    oracle_port: int = typer.Option(8303, help="Oracle Fusion REST emulator port"),
    only: list[str] = typer.Option([], help="start only these (sap-soap, sap-odata, oracle-rest)"),
    fault_probability: float = typer.Option(0.0, min=0.0, max=1.0, help="share of requests to fault"),
    fault_kind: list[str] = typer.Option([], help=f"fault kinds to draw from: {', '.join(ALL_FAULTS)}"),
    fault_seed: int | None = typer.Option(None, help="seed of the fault draw (reproducible runs)"),
    sap_user: str | None = typer.Option(None, help="require HTTP basic auth on the SAP SOAP endpoint"),
    sap_password: str | None = typer.Option(None, envvar="LEDGERHUB_EMULATOR_SAP_PASSWORD",
                                            help="password for --sap-user"),
    duration: float | None = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """Start the emulators and serve until interrupted. Prints one JSON line per emulator."""
    if ctx.invoked_subcommand is not None:
        return
    unknown = [k for k in fault_kind if k not in ALL_FAULTS]
    if unknown:
        raise typer.BadParameter(f"unknown fault kind(s): {', '.join(unknown)}")
    ports = {"sap-soap": sap_port, "sap-odata": odata_port, "oracle-rest": oracle_port}
    if only:
        bad = [n for n in only if n not in ports]
        if bad:
            raise typer.BadParameter(f"unknown emulator(s): {', '.join(bad)}")
        ports = {n: p for n, p in ports.items() if n in only}
    plan = FaultPlan(probability=fault_probability, kinds=tuple(fault_kind) or ALL_FAULTS, seed=fault_seed)
    credentials = (sap_user, sap_password or "") if sap_user else None
    running = start_emulators(host, ports, plan, credentials)
    for name, server in running:
        typer.echo(json.dumps(describe(name, server)))
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        for _, server in running:
            server.stop()


if __name__ == "__main__":
    app()
