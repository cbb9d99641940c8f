"""The verdict of an offline proof check: what was checked, and exactly what failed and where."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failure:
    """One failed check. `part` names the piece of evidence ("reading r-17", "block 12", "tx 3f2a…",
    "endorsement by CustomerMSP on tx 3f2a…"), `check` is a stable machine name, `detail` says why."""

    part: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.part}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {"part": self.part, "check": self.check, "detail": self.detail}


@dataclass
class VerificationReport:
    invoice_id: str | None = None
    network_id: str | None = None
    genesis_hash: str | None = None
    org_cas: dict[str, list[str]] = field(default_factory=dict)  # org -> SHA-256 of each CA cert (DER)
    checked: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, part: str, check: str, detail: str) -> None:
        self.failures.append(Failure(part, check, detail))

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] += n

    def failed_checks(self) -> set[str]:
        return {f.check for f in self.failures}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self.checked.items()))
        where = f"invoice {self.invoice_id or '?'} on network {self.network_id or '?'}"
        head = f"{where}: checked {counts or 'nothing'}"
        if self.genesis_hash:
            cas = "; ".join(f"{org} {', '.join(fp[:16] for fp in fps)}" for org, fps in self.org_cas.items())
            head += f"\ntrust anchor: genesis {self.genesis_hash} (org CA SHA-256: {cas})"
        if self.ok:
            return f"{head}\nVERIFIED: every signature, hash link and amount checks out"
        lines = "\n".join(f"  - {f}" for f in self.failures)
        return f"{head}\nFAILED: {len(self.failures)} problem(s)\n{lines}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "invoice_id": self.invoice_id,
            "network_id": self.network_id,
            "genesis_hash": self.genesis_hash,
            "org_cas": self.org_cas,
            "checked": dict(sorted(self.checked.items())),
            "failures": [f.to_json() for f in self.failures],
        }


def short(tx_id: str) -> str:
    """Transaction ids in messages: enough hex to find it, short enough to read."""
    return tx_id[:12] + "…" if len(tx_id) > 12 else tx_id
