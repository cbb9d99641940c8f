"""`ledgerhub network up|down|status|add-org|add-channel|remove-org|upgrade-chaincode`: the dev network.

The hub CLI mounts this typer app as `network` (`app.add_typer(network.cli.app, name="network")`); it also
runs alone as `python -m network.cli`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from network import manage
from network.procs import NetworkError

app = typer.Typer(help="The LedgerHub dev Fabric network (native binaries, no Docker).", no_args_is_help=True)

RunDir = typer.Option(
    None, "--run-dir", help="State dir (default $LEDGERHUB_DATA_DIR/fabric or network/.run)."
)


@app.command()
def up(
    chaincode_address: str = typer.Option(
        None, "--chaincode-address", help="host:port the peers dial for the chaincode (default base+40)."
    ),
    start_chaincode: bool = typer.Option(
        False, "--start-chaincode", help="Also start the chaincode server (python -m chaincode)."
    ),
    port_base: int = typer.Option(
        None, "--port-base", help="First port (default $LEDGERHUB_FABRIC_PORT_BASE or 17050)."
    ),
    run_dir: Path = RunDir,
    timeout: float = typer.Option(180.0, help="Seconds to wait for each readiness step."),
    hsm_keys: bool = typer.Option(
        None,
        "--hsm/--no-hsm",
        help="Node signing keys on SoftHSM2 (network/install.sh --pkcs11; default $LEDGERHUB_FABRIC_HSM).",
    ),
) -> None:
    """Start orderer + 3 peers, create channel `billing`, deploy the chaincode; print network.json."""
    try:
        info = manage.up(
            chaincode_address,
            run_dir=run_dir,
            port_base=port_base,
            start_chaincode=start_chaincode,
            timeout=timeout,
            hsm_keys=hsm_keys,
        )
    except manage.FabricUnavailable as exc:
        typer.echo(f"fabric unavailable: {exc}", err=True)
        raise typer.Exit(3) from exc
    except NetworkError as exc:
        typer.echo(f"network up failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(info, indent=2))
    typer.echo(f"network.json: {Path(info['run_dir']) / 'network.json'}", err=True)
    if not info["chaincode"]["server_started_by_network"]:
        cc = info["chaincode"]
        typer.echo(
            f"start the chaincode server with: CHAINCODE_ID='{cc['package_id']}' "
            f"CHAINCODE_SERVER_ADDRESS={cc['server_address']} {sys.executable} -m chaincode",
            err=True,
        )


@app.command()
def down(
    run_dir: Path = RunDir,
    keep_state: bool = typer.Option(False, "--keep-state", help="Stop the nodes but keep the run dir."),
) -> None:
    """Stop every node (SIGTERM, then SIGKILL) and remove the network's state."""
    try:
        stopped = manage.down(run_dir, keep_state=keep_state)
    except NetworkError as exc:
        typer.echo(f"network down failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("rotate-node-key")
def rotate_node_key(
    node: str = typer.Argument(..., help="orderer, peer-provider, peer-customer or peer-auditor"),
    run_dir: Path = RunDir,
) -> None:
    """--hsm networks: new signing key on the node's token, certificate from the org CA, node restarted."""
    from network import hsm_rotate

    try:
        result = hsm_rotate.rotate(manage.make_layout(run_dir).run_dir, node)
    except NetworkError as exc:
        typer.echo(f"rotate-node-key failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("add-org")
def add_org(
    name: str = typer.Argument(..., help="The org's key: 2-20 lower-case letters/digits (MSP id <Name>MSP)."),
    run_dir: Path = RunDir,
    timeout: float = typer.Option(180.0, help="Seconds to wait for each readiness step."),
    own_channel: bool = typer.Option(
        False,
        "--own-channel",
        help="Do not join `billing`: create channel billing-NAME with the provider, the org and the auditor "
        "(ADR 0067), so no other customer sees its contracts.",
    ),
) -> None:
    """An org joins the running network: crypto, channel config update signed by the admins the policy
    needs, its peer joins and catches up, it approves the chaincode; network.json lists it (ADR 0054).
    With --own-channel: crypto, its peer, and a channel of its own (ADR 0067)."""
    from network import orgs

    try:
        result = orgs.add_org(
            manage.make_layout(run_dir).run_dir, name, own_channel=own_channel, timeout=timeout
        )
    except NetworkError as exc:
        typer.echo(f"add-org failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("add-channel")
def add_channel(
    name: str = typer.Argument(..., help="Channel name (Fabric's rule: [a-z][a-z0-9.-]*, < 250 chars)."),
    org: list[str] = typer.Option(
        ..., "--org", help="A member org: key (provider, customer, auditor, a joined org) or MSP id. Repeat."
    ),
    run_dir: Path = RunDir,
    timeout: float = typer.Option(180.0, help="Seconds to wait for each readiness step."),
) -> None:
    """A new channel from a genesis block with these orgs (the orderer orders it), their peers joined, the
    chaincode committed on it; network.json `channels` lists it. Running it again finishes what is
    missing and changes nothing else (ADR 0067)."""
    from network import channels

    try:
        result = channels.add_channel(manage.make_layout(run_dir).run_dir, name, org, timeout=timeout)
    except channels.ChannelRefused as exc:
        typer.echo(f"add-channel refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    except NetworkError as exc:
        typer.echo(f"add-channel failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))
    done = ", ".join(result["created"]) or "nothing (the channel was complete)"
    total = sum(result["rss_kb"].values())
    typer.echo(
        f"channel {name}: members {', '.join(result['orgs'])}; did {done}; "
        f"timings (cumulative s) {result['timings_seconds']}; network rss {total / 1024:.0f} MB",
        err=True,
    )


@app.command("remove-org")
def remove_org(
    name: str = typer.Argument(..., help="The key of an org added with add-org."),
    run_dir: Path = RunDir,
    force: bool = typer.Option(
        False, "--force", help="Remove it even while it is a party of open contracts (they stay, frozen)."
    ),
    timeout: float = typer.Option(180.0, help="Seconds to wait for each readiness step."),
) -> None:
    """An org leaves: channel config update removing its group (and it from the member policies), signed
    by the admins the policy needs; its peer stops. Refused while it has open contracts (ADR 0063)."""
    from network import removal

    try:
        result = removal.remove_org(manage.make_layout(run_dir).run_dir, name, force=force, timeout=timeout)
    except removal.MembershipRefused as exc:
        typer.echo(f"remove-org refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    except NetworkError as exc:
        typer.echo(f"remove-org failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("upgrade-chaincode")
def upgrade_chaincode(
    run_dir: Path = RunDir,
    version: str = typer.Option(None, help="Version string of the new definition (default: its sequence)."),
    address: str = typer.Option(None, help="host:port of the new chaincode server (default base+40+n)."),
    start_server: bool = typer.Option(
        True, "--start-server/--no-start-server", help="Start the new server (python -m chaincode)."
    ),
    timeout: float = typer.Option(180.0, help="Seconds to wait for each readiness step."),
    approver: list[str] = typer.Option(
        None,
        "--approver",
        help="Org key that approves before the commit (repeat; default every org). The others approve "
        "right after the commit.",
    ),
    channel: str = typer.Option(
        None, "--channel", help="Upgrade only this channel (default: every channel in network.json)."
    ),
) -> None:
    """Next chaincode sequence, live: new package and server, approved by every org, committed; the old
    server stops once every peer runs the new definition (ADR 0055)."""
    from network import upgrade

    try:
        result = upgrade.upgrade_chaincode(
            manage.make_layout(run_dir).run_dir,
            version=version,
            address=address,
            start_server=start_server,
            timeout=timeout,
            approvers=approver or None,
            channel=channel,
        )
    except NetworkError as exc:
        typer.echo(f"upgrade-chaincode failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command("retire-node-key")
def retire_node_key(
    node: str = typer.Argument(..., help="a node rotated with rotate-node-key"),
    run_dir: Path = RunDir,
) -> None:
    """--hsm networks: revoke the node's rotated-out certificates (CRL in its org's MSP, config update)."""
    from network import hsm_retire

    try:
        result = hsm_retire.retire(manage.make_layout(run_dir).run_dir, node)
    except NetworkError as exc:
        typer.echo(f"retire-node-key failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command()
def status(run_dir: Path = RunDir) -> None:
    """Each node: pid, alive, healthy (/healthz). Exit 1 if any node is down."""
    report = manage.status(run_dir)
    if not report:
        typer.echo("no network in this run dir")
        raise typer.Exit(1)
    total = sum(e["rss_kb"] for e in report.values())
    for name, entry in report.items():
        health = "" if "healthy" not in entry else (" healthy" if entry["healthy"] else " UNHEALTHY")
        state = "up" if entry["alive"] else "DOWN"
        rss = f" rss {entry['rss_kb'] / 1024:.0f} MB" if entry["alive"] else ""
        typer.echo(f"{name:16} pid {entry['pid']:>7} {state}{health}{rss}")
    typer.echo(f"total rss {total / 1024:.0f} MB")
    if not all(e["alive"] and e.get("healthy", True) for e in report.values()):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
