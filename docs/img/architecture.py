"""Draws docs/img/architecture.svg, the hub's layers, from the import-linter contract in pyproject.toml.

    python docs/img/architecture.py          # rewrites docs/img/architecture.svg
    python docs/img/architecture.py --check  # exit 1 when the committed picture is out of date

Standard library only. The layers (their order and their modules) are read from `[tool.importlinter]`;
what each layer holds is the `ROLES` table below, keyed by the layer as the contract spells it, so a layer
added to the contract without a line here stops the drawing (and tests/unit/test_architecture_doc.py).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
SVG = Path(__file__).with_suffix(".svg")

# layer as in pyproject.toml -> (name of the layer, what it holds, interface badge or "")
ROLES: dict[str, tuple[str, str, str]] = {
    "hub.cli : hub.app : hub.demo : hub.bench": (
        "entry points", "the ledgerhub command, the ASGI factory, the demo, the benchmarks", ""),
    "hub.api": (
        "HTTP", "routers: parse, authorise, call, return; Depends, limits, TLS",
        "errors -> problem+json"),
    "hub.portal : hub.bank : hub.delivery : hub.audit": (
        "areas", "portal, bank statements + SEPA, delivery (outbox, dispatcher), audit proofs",
        "uses Connector"),
    "hub.scheduler : hub.ingest : hub.amendments": (
        "use cases", "period close, usage ingestion (edge checks, batching), amendment hooks", ""),
    "hub.services": (
        "services", "LedgerGateway: the request-facing ledger calls + visibility look-ups", ""),
    "hub.billing : hub.ingest_capacity : hub.ingest_pipeline : hub.ingest_message : hub.ingest_recovery": (
        "billing", "forecast, visibility, usage reads, contracts; ingestion's pure parts",
        "ContractClient + answers"),
    "hub.store": (
        "store", "SQLAlchemy read models, outbox, projector, Alembic migrations", ""),
    "hub.ledger : hub.metrics : hub.errors : hub.principal": (
        "ledger", "embedded/ and fabric/; domain errors (HubError), metrics, the caller",
        "Ledger + LedgerError"),
    "hub.keys": (
        "keys", "PKCS#11 HSM and software signers, key manager, key audit log", "Signer"),
    "hub.config": (
        "settings", "typed Settings with sections, extra=forbid, secrets as SecretStr", "Settings"),
}

# the packages beside the hub: (folder, what it holds, the contract that holds it, interface, layer it meets)
BESIDE = (
    ("chaincode/", "the contract (tx/), rating, periods; shim/ serves it to Fabric peers",
     "imports nothing of hub, connectors, network", "Stub",
     "hub.ledger : hub.metrics : hub.errors : hub.principal"),
    ("connectors/", "SAP SOAP + OData, Oracle REST, UBL drop; registry by entry point",
     "imports no hub.ledger, hub.api, hub.services", "Connector",
     "hub.portal : hub.bank : hub.delivery : hub.audit"),
    ("network/", "a Fabric 3.1 network on native binaries: ledgerhub network up, add-org, ...",
     "used by the entry points; own NetworkSettings", "", "hub.cli : hub.app : hub.demo : hub.bench"),
)

W, TOP, BAND, GAP = 1290, 92, 54, 8
HUB_X, HUB_W = 110, 760
SIDE_X, SIDE_W = 990, 280
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"


def layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    return [" : ".join(part.strip() for part in layer.split(":")) for layer in contract["layers"]]


def short(layer: str) -> str:
    """`hub.billing : hub.ingest_capacity : ...` -> `billing  ingest_capacity ...` (the hub. prefix once)."""
    return "   ".join(module.removeprefix("hub.") for module in layer.split(" : "))


def text(x: float, y: float, body: str, *, size: int = 13, weight: str = "normal", family: str = FONT,
         fill: str = "#1f2933", anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:g}" y="{y:g}" font-family="{family}" font-size="{size}" font-weight="{weight}" '
            f'fill="{fill}" text-anchor="{anchor}"{extra}>{escape(body)}</text>')


def draw() -> str:
    order = layers()
    missing = [layer for layer in order if layer not in ROLES]
    stale = [layer for layer in ROLES if layer not in order]
    if missing or stale:
        raise SystemExit(f"ROLES does not match pyproject.toml: missing {missing}, stale {stale}")
    height = TOP + len(order) * (BAND + GAP) + 126
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
        f'role="img" aria-labelledby="title desc">',
        "<title id=\"title\">LedgerHub: the hub's layers</title>",
        '<desc id="desc">The hub in ten layers checked by import-linter, each importing only the layers '
        "below it, and the chaincode, the ERP connectors and the Fabric network tooling beside it.</desc>",
        "<defs>",
        '<marker id="down" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#52606d"/></marker>',
        '<marker id="err" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker>',
        "</defs>",
        f'<rect x="0" y="0" width="{W}" height="{height}" fill="#ffffff"/>',
        text(HUB_X, 34, "LedgerHub: the hub's layers", size=22, weight="bold"),
        text(HUB_X, 58, "as the import-linter contracts in pyproject.toml enforce them (lint-imports, "
             "tests/unit/test_layers.py); a layer imports only layers below it", size=13, fill="#52606d"),
        f'<rect x="{HUB_X - 12}" y="{TOP - 18}" width="{HUB_W + 24}" '
        f'height="{len(order) * (BAND + GAP) + 26}" rx="10" fill="#f5f7fa" stroke="#9aa5b1" '
        'stroke-width="1.5"/>',
        text(HUB_X - 4, TOP - 4, "hub/", size=13, weight="bold", family=MONO, fill="#52606d"),
    ]
    centre: dict[str, float] = {}
    for i, layer in enumerate(order):
        name, role, badge = ROLES[layer]
        y = TOP + 6 + i * (BAND + GAP)
        centre[layer] = y + BAND / 2
        fill = "#e3f2fd" if i % 2 == 0 else "#ffffff"
        out.append(f'<rect x="{HUB_X}" y="{y}" width="{HUB_W}" height="{BAND}" rx="6" fill="{fill}" '
                   'stroke="#7b8794"/>')
        out.append(text(HUB_X + 12, y + 22, f"{i + 1}. {name}", size=14, weight="bold"))
        out.append(text(HUB_X + 150, y + 22, short(layer), size=12.5 if len(layer) < 70 else 11.5,
                        family=MONO, fill="#102a43"))
        out.append(text(HUB_X + 150, y + 42, role, size=12, fill="#3e4c59"))
        if badge:
            bw = 12 + 7.4 * len(badge)
            bx = HUB_X + HUB_W - bw - 10
            out.append(f'<rect x="{bx:g}" y="{y + 30}" width="{bw:g}" height="19" rx="9" fill="#fff4e5" '
                       'stroke="#d9822b"/>')
            out.append(text(bx + bw / 2, y + 44, badge, size=11.5, weight="bold", fill="#8a4b08",
                            anchor="middle"))
    bottom = TOP + 6 + len(order) * (BAND + GAP) - GAP
    # imports point down (left), errors travel up to the one mapping (between the arrow and the box)
    ix, ex = HUB_X - 62, HUB_X - 28
    out.append(f'<line x1="{ix}" y1="{TOP + 10}" x2="{ix}" y2="{bottom - 6}" stroke="#52606d" '
               'stroke-width="2" marker-end="url(#down)"/>')
    mid = (TOP + bottom) / 2
    out.append(text(ix - 8, mid, "imports point down", size=12, fill="#52606d", anchor="middle",
                    extra=f' transform="rotate(-90 {ix - 8} {mid})"'))
    top_api, low = centre["hub.api"], centre["hub.ledger : hub.metrics : hub.errors : hub.principal"]
    out.append(f'<line x1="{ex}" y1="{low}" x2="{ex}" y2="{top_api + 6}" stroke="#c0392b" stroke-width="2" '
               'stroke-dasharray="6 4" marker-end="url(#err)"/>')
    emid = (top_api + low) / 2
    out.append(text(ex - 8, emid, "errors raised below, mapped to HTTP once (hub/api/errors.py)", size=11.5,
                    fill="#c0392b", anchor="middle", extra=f' transform="rotate(-90 {ex - 8} {emid})"'))
    # beside the hub
    for folder, role, rule, interface, meets in BESIDE:
        cy = centre[meets]
        y = cy - 44
        out.append(f'<rect x="{SIDE_X}" y="{y:g}" width="{SIDE_W}" height="88" rx="8" fill="#eef8ee" '
                   'stroke="#3f9142" stroke-width="1.5"/>')
        out.append(text(SIDE_X + 12, y + 22, folder, size=14, weight="bold", family=MONO, fill="#1d5c20"))
        out.extend(_wrapped(SIDE_X + 12, y + 41, role, 44, size=11.5, fill="#3e4c59"))
        out.append(text(SIDE_X + 12, y + 78, rule, size=11, fill="#1d5c20", extra=' font-style="italic"'))
        if interface:
            out.append(f'<line x1="{SIDE_X}" y1="{cy:g}" x2="{HUB_X + HUB_W + 2}" y2="{cy:g}" '
                       'stroke="#3f9142" stroke-width="2"/>')
            bw, bc = len(interface) * 8 + 16, (HUB_X + HUB_W + 12 + SIDE_X) / 2
            out.append(f'<rect x="{bc - bw / 2:g}" y="{cy - 11:g}" width="{bw}" height="22" rx="11" '
                       'fill="#fff4e5" stroke="#d9822b"/>')
            out.append(text(bc, cy + 4, interface, size=12, weight="bold", fill="#8a4b08", anchor="middle"))
        else:
            out.append(f'<line x1="{SIDE_X}" y1="{cy:g}" x2="{HUB_X + HUB_W + 2}" y2="{cy:g}" '
                       'stroke="#3f9142" stroke-width="1.5" stroke-dasharray="4 4"/>')
    # legend
    ly = bottom + 40
    out.append(text(HUB_X, ly, "Interfaces (orange): Stub = what the contract sees (embedded simulator, "
                    "Fabric shim); Ledger = evaluate/submit/endorse/events/block/tx", size=12.5))
    out.append(text(HUB_X, ly + 20, "(embedded, Fabric); Signer = HSM or software keys; Connector = "
                    "deliver/lookup/status of one ERP. ContractClient = the one typed way to call the "
                    "chaincode.", size=12.5))
    out.append(text(HUB_X, ly + 44, "Exceptions by name in the contract: hub.portal.{router,data,views} and "
                    "hub.bank.{router,mandate_router} are HTTP modules kept in their area's package;",
                    size=12, fill="#52606d"))
    out.append(text(HUB_X, ly + 62, "hub.portal.bench is an entry point. Settings come from LEDGERHUB_* and "
                    "LEDGERHUB_CONFIG through hub/config.py only (network/ has network/settings.py).",
                    size=12, fill="#52606d"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _wrapped(x: float, y: float, body: str, width: int, **style: object) -> list[str]:
    lines, line = [], ""
    for word in body.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return [text(x, y + 15 * n, part, **style) for n, part in enumerate(lines[:2])]  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    svg = draw()
    if "--check" in argv:
        current = SVG.read_text() if SVG.exists() else ""
        if current != svg:
            print(f"{SVG.relative_to(ROOT)} is out of date: run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    SVG.write_text(svg)
    print(f"wrote {SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
