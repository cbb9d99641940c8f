"""An org leaves the running network: `ledgerhub network remove-org NAME` (ADR 0063).

1. refusals that change nothing: a founding org (provider, customer, auditor: the channel is theirs), an org
   this network never added (`unknown_org`), an org that is still a party of open contracts
   (`open_contracts`, unless `force`): the provider's peer is asked (`ListContracts {"party"}`) and every
   contract not ENDED counts. A contract's keys carry the key-level policy AND(provider peer, customer
   peer); once the customer's org is gone from the channel nobody can satisfy it, so such a contract could
   never be accepted, billed, posted or paid again. `force` removes the org anyway; its contracts and
   invoices stay on the ledger as they are (history is never rewritten), readable by everyone who could read
   them, and frozen;
2. one channel config update: the org's group leaves /Channel/Application and, in the same update, the org
   leaves the explicit member policies (network/membership.py), signed by the admins the Application
   group's `Admins` policy requires, the leaving org's own admin only if the others cannot satisfy it;
3. every remaining peer holds the new config block: from then on the peers refuse the org's identities
   (its MSP is no longer in the channel: proposals and transactions it signs are refused, endorsements
   its peer signs no longer count);
4. its peer stops; `orgs.json` marks the org removed (its slot and ports are not reused), and network.json
   no longer lists it (a hub opened on it has no identity for the org).

Re-running after an interruption finishes the remaining steps and repeats none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fabric_protos.common import configtx_pb2

from network import channels, configupdate, hsm, membership
from network.admin import describe, peer_admin_env
from network.layout import CHANNEL, JOINED_ORGS_FILE, Layout
from network.orgs import load_info, network_layout, write_info
from network.procs import NetworkError, recorded, run, stop

FOUNDING = ("provider", "customer", "auditor")


class MembershipRefused(NetworkError):
    """A membership change refused before anything changed; `code` is stable (unknown_org, founding_org,
    open_contracts)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.extra = extra


def contracts_of(layout: Layout, mspid: str) -> list[dict[str, Any]]:
    """Every contract `mspid` is a party of, as the provider's peer answers `ListContracts`."""
    body = json.dumps({"party": mspid})
    args = json.dumps({"Args": ["ListContracts", body]})
    out = run(
        [str(layout.binary("peer")), "chaincode", "query", "-C", CHANNEL, "-n", "billing", "-c", args],
        peer_admin_env(layout, layout.org("provider")),
        timeout=60,
    )
    return list(json.loads(out[out.index("{") : out.rindex("}") + 1])["contracts"])


def _entries(layout: Layout) -> list[dict[str, Any]]:
    file = layout.run_dir / JOINED_ORGS_FILE
    return json.loads(file.read_text()) if file.is_file() else []


def _mark_removed(layout: Layout, key: str, block: int | None) -> None:
    entries = _entries(layout)
    for entry in entries:
        if entry["key"] == key and not entry.get("removed"):
            entry["removed"] = True
            entry["removed_in_block"] = block
    file = layout.run_dir / JOINED_ORGS_FILE
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2))
    tmp.replace(file)


def remove_org(run_dir: Path, name: str, *, force: bool = False, timeout: float = 180.0) -> dict[str, Any]:
    """Remove the joined org `name`; return {key, mspid, config_update, open_contracts, peer_stopped,
    timings_seconds}. MembershipRefused (nothing changed) for the refusals in the module docstring."""
    run_dir = run_dir.resolve()
    layout = network_layout(run_dir)
    if name in FOUNDING or name == "orderer":
        raise MembershipRefused(
            "founding_org", f"{name!r} is a founding org of the channel; it is not removed"
        )
    entry = next((e for e in _entries(layout) if e["key"] == name), None)
    if entry is None:
        raise MembershipRefused("unknown_org", f"no org {name!r} joined this network", org=name)
    mspid = entry["mspid"]
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    provider = layout.org("provider")
    config = configupdate.config_of(configupdate.fetch_config_block(layout, provider))
    in_channel = mspid in config.channel_group.groups["Application"].groups
    open_contracts: list[dict[str, Any]] = []
    if in_channel:
        open_contracts = [c for c in contracts_of(layout, mspid) if c["status"] != "ENDED"]
        timings["contracts_checked"] = time.monotonic() - t0
        if open_contracts and not force:
            ids = [c["id"] for c in open_contracts]
            raise MembershipRefused(
                "open_contracts",
                f"{mspid} is a party of {len(ids)} open contract(s) {ids[:10]}: end them first, or "
                "--force (they stay on the ledger, frozen: nobody can endorse for the removed org)",
                contracts=ids,
            )
    update: dict[str, Any] | None = None
    if in_channel:

        def drop(cfg: configtx_pb2.Config) -> None:
            del cfg.channel_group.groups["Application"].groups[mspid]
            membership.set_member_policies(cfg, remove=mspid)

        update = configupdate.apply(
            layout, drop, policy_group=["Application"], name=f"remove-{name}", timeout=timeout, avoid=[mspid]
        )
        remaining = [o for o in channels.member_orgs(layout, load_info(run_dir)) if o.mspid != mspid]
        configupdate.wait_peers_at(layout, remaining, int(update["block"]) + 1, timeout)
    timings["channel_config_updated"] = time.monotonic() - t0
    _mark_removed(layout, name, int(update["block"]) if update else None)
    stopped = False
    for node in recorded(layout.pids_dir):
        if node.name == f"peer-{name}":
            if node.is_alive() and not stop(node):
                raise NetworkError(f"the peer of {name} did not stop")
            (layout.pids_dir / f"{node.name}.json").unlink()
            stopped = True
    timings["peer_stopped"] = time.monotonic() - t0
    layout = network_layout(run_dir)  # without the removed org
    info = load_info(run_dir)
    fresh = describe(layout, info["chaincode"]["package_id"], info["chaincode"]["server_env"])
    info["orgs"] = fresh["orgs"]
    info["hsm"] = hsm.describe(run_dir)
    billing = channels.record_default(info)[CHANNEL]
    billing["orgs"] = [m for m in billing["orgs"] if m != mspid]
    removed = [r for r in info.get("removed_orgs", []) if r["key"] != name]
    info["removed_orgs"] = [*removed, {"key": name, "mspid": mspid, "block": update and update["block"]}]
    write_info(run_dir, info)
    return {
        "key": name,
        "mspid": mspid,
        "config_update": update,
        "open_contracts": [c["id"] for c in open_contracts],
        "peer_stopped": stopped,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }
