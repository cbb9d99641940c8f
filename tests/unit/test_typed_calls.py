"""One typed way to call the chaincode (ADR 0061, 0064): no module under hub/ but hub/billing/client.py
names a chaincode function in a ledger call.

The scan parses every module under hub/ and flags a call `<anything>.submit(...)`, `.evaluate(...)`,
`.read_as_hub(...)` or `.endorse(...)` whose first argument is a string literal naming a function of the
chaincode (`chaincode.contract.FUNCTIONS`). Everything else calls the `ContractClient`'s typed methods.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from chaincode.contract import FUNCTIONS

pytestmark = pytest.mark.unit

HUB = Path(__file__).resolve().parents[2] / "hub"
THE_CLIENT = HUB / "billing" / "client.py"
LEDGER_CALLS = frozenset({"submit", "evaluate", "read_as_hub", "endorse"})


def raw_calls(tree: ast.AST, functions: Iterable[str] = FUNCTIONS) -> list[tuple[int, str, str]]:
    """(line, method, chaincode function) of every ledger call naming a chaincode function by a literal."""
    names = frozenset(functions)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEDGER_CALLS and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value in names:
            found.append((node.lineno, node.func.attr, first.value))
    return found


def offenders(root: Path = HUB) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        if path == THE_CLIENT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out += [f"{path.relative_to(root.parent)}:{line} .{method}({fn!r}, ...)"
                for line, method, fn in raw_calls(tree)]
    return out


def test_no_raw_chaincode_call_outside_the_contract_client() -> None:
    found = offenders()
    assert found == [], "call the ContractClient's typed method instead:\n" + "\n".join(found)


def test_the_scan_finds_each_form_of_a_raw_call() -> None:
    source = '''
gw.submit("Dispute", {"invoice_id": i}, as_org=o)
self.gateway.read_as_hub("GetContract", {"id": c})
ledger.evaluate(
    "GetAsset", [json.dumps({"id": a})], as_org=o)
ledger.endorse("RecordUsage", [arg], as_org=o)
'''
    assert raw_calls(ast.parse(source)) == [
        (2, "submit", "Dispute"), (3, "read_as_hub", "GetContract"), (4, "evaluate", "GetAsset"),
        (6, "endorse", "RecordUsage")]


def test_the_scan_ignores_other_calls() -> None:
    source = '''
pool.submit(self._run_one, batch)
client.dispute(invoice_id, reason=r, as_org=o)
service.evaluate(contract_id, org)
run("RegisterAsset", device.asset())
gw.submit("NotAChaincodeFunction", {})
'''
    assert raw_calls(ast.parse(source)) == []

