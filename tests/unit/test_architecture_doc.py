"""docs/architecture.md cannot silently rot: every file and function its trace names exists, every path it
mentions exists, its layer table is the import-linter contract's, and its picture is drawn from that contract.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
TICKED = re.compile(r"`([^`]+)`")


def section(text: str, heading: str) -> str:
    """The body of the `## heading...` section, up to the next `## `."""
    start = text.index(f"\n## {heading}")
    body = text[start + 1:].split("\n", 1)[1]
    return body.split("\n## ", 1)[0]


def numbered_rows(body: str) -> list[list[str]]:
    """The cells of the table rows whose first cell is a number."""
    rows = []
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[0].isdigit():
            rows.append(cells)
    return rows


def trace(text: str) -> list[tuple[str, list[str]]]:
    """(file, function names) of each step of the traced reading."""
    steps = []
    for cells in numbered_rows(section(text, "One reading")):
        (path,) = TICKED.findall(cells[1])
        steps.append((path, TICKED.findall(cells[2])))
    return steps


def missing(root: Path, path: str, names: list[str]) -> list[str]:
    """What of `path` and its top-level `function` / `Class` / `Class.method` names does not exist."""
    file = root / path
    if not file.is_file():
        return [path]
    tree = ast.parse(file.read_text())
    defined = {node.name: node for node in tree.body
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    problems = []
    for name in names:
        head, _, attr = name.partition(".")
        node = defined.get(head)
        if node is not None and attr:
            members = {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)} \
                if isinstance(node, ast.ClassDef) else set()
            node = node if attr in members else None
        if node is None:
            problems.append(f"{path}: {name}")
    return problems


def contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [[module.strip() for module in layer.split(":")] for layer in layers]


def test_the_trace_names_at_most_six_files_and_each_function_exists() -> None:
    steps = trace(DOC.read_text())
    assert len(steps) >= 4 and all(names for _, names in steps)
    assert len({path for path, _ in steps}) <= 6
    assert [problem for path, names in steps for problem in missing(ROOT, path, names)] == []


def test_the_check_fails_for_a_renamed_function_or_a_moved_file() -> None:
    assert missing(ROOT, "hub/ingest.py", ["Ingestor.handle"]) == []
    assert missing(ROOT, "hub/ingest.py", ["Ingestor.no_such_method", "no_such_function"]) == [
        "hub/ingest.py: Ingestor.no_such_method", "hub/ingest.py: no_such_function"]
    assert missing(ROOT, "hub/scheduler.py", ["close_period.attr"]) == ["hub/scheduler.py: close_period.attr"]
    assert missing(ROOT, "hub/no_such_module.py", ["anything"]) == ["hub/no_such_module.py"]
    text = ("\n## One reading\n| # | file | function | role |\n|---|---|---|---|\n"
            "| 1 | `a.py` | `f`, `C.m` | x |\n## Next\n| 2 | `b.py` | `g` | y |\n")
    assert trace(text) == [("a.py", ["f", "C.m"])]


def test_every_path_the_doc_names_exists() -> None:
    text = DOC.read_text()
    # repository paths (with a folder); a bare `client.py` is named beside its folder in the prose
    paths = {t for t in TICKED.findall(text) if re.fullmatch(r"[\w.-]+/[\w./-]+\.(py|md|toml|svg)", t)}
    paths |= {f"docs/{link}" for link in re.findall(r"\]\(([\w./-]+)\)", text)}
    assert len(paths) > 20
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_the_layer_table_is_the_import_linter_contract() -> None:
    rows = numbered_rows(section(DOC.read_text(), "The hub's layers"))
    documented = [TICKED.findall(cells[2]) for cells in rows]
    assert documented == contract_layers()


def test_the_picture_is_drawn_from_the_current_contract() -> None:
    script = ROOT / "docs" / "img" / "architecture.py"
    spec = importlib.util.spec_from_file_location("architecture_picture", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.layers() == [" : ".join(layer) for layer in contract_layers()]
    svg = module.draw()
    assert (ROOT / "docs" / "img" / "architecture.svg").read_text() == svg, \
        "docs/img/architecture.svg is out of date: python docs/img/architecture.py"
    assert "img/architecture.svg" in DOC.read_text()
