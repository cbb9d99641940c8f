"""docs/api-errors.md lists every stable error code, and only those (the doc cannot drift from the code).

The codes are collected from where they are decided, nothing is copied here:
- the chaincode's registry `chaincode.errors.ERROR_STATUS` (a `ChaincodeError` with another code cannot be
  made, so every code a chaincode function raises is there), with the status it travels with;
- the hub's one mapping in `hub.api.errors` (`LEDGER_ERRORS`, `HTTP_CODES`, `HTTP_OTHER_CODE`);
- the code arguments of every refusal the hub and the connectors construct (`HubError` and its
  subclasses, `ApiError`, and the lower-layer errors whose code the routers pass through unchanged), read
  from the source with `ast`, plus the `code`/`default_code` class attributes of the error classes;
- the dispatcher's crash code `hub.delivery.outcomes.CRASHED`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaincode.errors import ERROR_STATUS
from hub.api import errors as api_errors
from hub.delivery.outcomes import CRASHED

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api-errors.md"
SCANNED = ("hub", "connectors")
# the ERP emulators speak the ERPs' codes, not ours; the benchmark's plain-database baseline is no API
NOT_SCANNED = ("connectors/emulators", "hub/bench")

# callable name -> index of its positional `code` argument (a `code=` keyword counts too)
CODE_ARGUMENT = {
    # hub.errors.HubError and its subclasses; hub.api.problems.ApiError takes the status first
    "HubError": 0, "InvalidInput": 0, "Forbidden": 0, "WrongHubOrg": 0, "NotFound": 0, "Conflict": 0,
    "Unavailable": 0, "ApiError": 1,
    # helpers that build one of those from a code they are given
    "not_visible": 0, "_not_found": 0, "_too_many": 3,
    # lower-layer refusals whose code a router or the proof hook passes on unchanged
    "ProofError": 0, "FabricProofError": 0, "BankError": 0, "StatementError": 0, "MandateError": 0,
    "KeyManagerError": 0,
}
# classes whose `code` is not an API code: PKCS#11 failures stay inside the key tooling (a 500 at the API)
CLASS_CODES_IGNORED = ("hub/keys/pkcs11.py",)


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(NOT_SCANNED):
                yield rel, ast.parse(path.read_text(encoding="utf-8"), rel)


def _constants(modules: list[tuple[str, ast.Module]]) -> dict[str, str]:
    """Module-level `NAME = "text"` of every scanned module (codes are sometimes named, FORBIDDEN_CODE)."""
    found: dict[str, str] = {}
    for _rel, tree in modules:
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                found[node.targets[0].id] = node.value.value
    return found


def _text(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None  # a code handed on (`exc.code`, a parameter): collected where it was written


def _code_index(call: ast.Call) -> int | None:
    """Where `call` takes a code: `ApiError(...)`, `errors.ApiError(...)`, `ApiError.__init__(self, ...)`."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "__init__" and isinstance(func.value, ast.Name):
        index = CODE_ARGUMENT.get(func.value.id)
        return None if index is None else index + 1  # `self` comes first
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return CODE_ARGUMENT.get(name or "")


def source_codes() -> dict[str, str]:
    """Every code the hub and the connectors write, with the file that writes it first."""
    modules = list(_modules())
    constants = _constants(modules)
    codes: dict[str, str] = {}
    for rel, tree in modules:
        for node in ast.walk(tree):
            found: list[str | None] = []
            index = _code_index(node) if isinstance(node, ast.Call) else None
            if isinstance(node, ast.Call) and index is not None:
                if len(node.args) > index:
                    found.append(_text(node.args[index], constants))
                found += [_text(k.value, constants) for k in node.keywords if k.arg == "code"]
            elif isinstance(node, ast.ClassDef) and rel not in CLASS_CODES_IGNORED:
                for item in node.body:
                    if (isinstance(item, ast.Assign) and len(item.targets) == 1
                            and isinstance(item.targets[0], ast.Name)
                            and item.targets[0].id in {"code", "default_code"}):
                        found.append(_text(item.value, constants))
            for code in found:
                if code is not None:
                    codes.setdefault(code, rel)
    return codes


def all_codes() -> set[str]:
    codes = set(ERROR_STATUS) | set(source_codes())
    codes |= {code for _cls, _refusal, code, _title, _retry in api_errors.LEDGER_ERRORS}
    codes |= set(api_errors.HTTP_CODES.values()) | {api_errors.HTTP_OTHER_CODE, CRASHED}
    return codes


ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*([^|]*)\|")


def doc_rows() -> dict[str, str]:
    """code -> the status column of each table row of the doc that starts with a `code`."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice in {DOC.name}"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_collector_finds_codes_of_each_kind() -> None:
    """The collector can fail: it sees codes written as literals, as named constants, as class attributes,
    and codes handed through lower-layer errors (so an empty or partial scan is caught here first)."""
    found = source_codes()
    assert found["delivery_not_dead_lettered"] == "hub/api/routers/deliveries.py"  # ApiError literal
    assert found["webhook_url_forbidden"].startswith("hub/")  # FORBIDDEN_CODE constant
    assert found["erp_rejected"] == "connectors/base.py"  # class attribute
    assert found["proof_unsupported"].startswith("hub/audit/")  # ProofError, passed on by the proof hook
    assert found["wrong_hub_org"] == "hub/errors.py"  # default_code
    assert "hsm_pin_incorrect" not in found


def test_every_code_is_documented() -> None:
    missing = sorted(all_codes() - set(doc_rows()))
    assert not missing, f"codes missing from docs/api-errors.md: {missing}"


def test_doc_lists_no_code_that_no_longer_exists() -> None:
    stale = sorted(set(doc_rows()) - all_codes())
    assert not stale, f"docs/api-errors.md lists codes nothing raises any more: {stale}"


@pytest.mark.parametrize("code", sorted(ERROR_STATUS))
def test_chaincode_status_matches_doc(code: str) -> None:
    """A chaincode code's documented status is the one it travels with (hub.errors.from_chaincode uses it)."""
    assert doc_rows().get(code) == str(ERROR_STATUS[code])
