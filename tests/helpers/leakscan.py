"""Suite-wide search for secrets (the HSM PIN) in everything the test suite wrote.

Tests that create a secret `remember()` it; `tests/conftest.py` copies every test's captured stdout,
stderr and log lines into `test-artifacts/suite-output.log` as the suite runs, and at the end searches that
file and every log-like file under pytest's temporary directory (where subprocesses, served hubs and CLI
runs write their logs) for each remembered secret. A hit fails the run and says where.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_SECRETS: set[str] = set()
# files that may legitimately hold a secret: the PIN file an operator points LEDGERHUB_PKCS11_PIN_FILE at
_HOLDERS = ("pin",)
LOG_SUFFIXES = (".log", ".out", ".err", ".txt", ".jsonl", ".json", ".xml", ".csv")


def remember(secret: str) -> None:
    """A secret that must appear in no output of the suite. Short strings would match by accident."""
    if len(secret) < 8:
        raise ValueError("too short to search for without false hits")
    _SECRETS.add(secret)


def remembered() -> frozenset[str]:
    return frozenset(_SECRETS)


def find_in_text(text: str, secrets: Iterable[str]) -> list[int]:
    """Line numbers (1-based) of `text` that contain any of `secrets`."""
    wanted = [s for s in secrets if s]
    return [n for n, line in enumerate(text.splitlines(), 1) if any(s in line for s in wanted)]


def scan_files(paths: Iterable[Path], secrets: Iterable[str]) -> list[tuple[Path, int]]:
    """(file, line) of every line in `paths` holding a secret; unreadable files are skipped."""
    wanted = list(secrets)
    hits: list[tuple[Path, int]] = []
    for path in paths:
        try:
            text = path.read_text("utf-8", errors="replace")
        except OSError:
            continue
        hits += [(path, n) for n in find_in_text(text, wanted)]
    return hits


def log_like_files(root: Path) -> list[Path]:
    """Files under `root` a process could have written its logs or output to (not secret holders)."""
    if not root.is_dir():
        return []
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in LOG_SUFFIXES and not any(h in p.name.lower() for h in _HOLDERS)
    ]
