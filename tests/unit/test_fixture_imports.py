"""The suite's own layout rule (tests/README.md): pytest finds fixtures; no test module imports one by name.

An imported fixture is a separate fixture of the importing module (a session-scoped one is then created once
per module: a second Fabric network), and the import needs ruff's F401 and F811 suppressed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in {"pytest.fixture", "fixture"}


def fixture_functions(sources: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Module name -> names of the fixture functions defined at its top level."""
    return {
        module: {
            node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and any(_is_fixture(d) for d in node.decorator_list)
        }
        for module, tree in sources.items()
    }


def fixture_imports(sources: dict[str, ast.Module]) -> list[str]:
    """Every `from tests.x import name` (anywhere in a module) where `name` is a fixture of tests.x."""
    fixtures = fixture_functions(sources)
    found = []
    for module, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in fixtures:
                found += [f"{module}:{node.lineno} imports fixture {node.module}.{alias.name}"
                          for alias in node.names if alias.name in fixtures[node.module]]
    return found


def _parse(files: dict[str, str]) -> dict[str, ast.Module]:
    return {module: ast.parse(text) for module, text in files.items()}


def test_no_test_module_imports_a_fixture() -> None:
    sources = {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(TESTS.rglob("*.py"))}
    assert fixture_imports(sources) == []


def test_the_check_finds_an_imported_fixture_and_ignores_helper_functions() -> None:
    sources = _parse({
        "tests.helpers.area": (
            "import pytest\n\n@pytest.fixture(scope='session')\ndef thing():\n    return 1\n\n"
            "def build():\n    return 2\n"
        ),
        "tests.unit.test_a": "from tests.helpers.area import build, thing\n",
        "tests.unit.test_b": "from tests.helpers.area import build\n",
    })
    assert fixture_imports(sources) == ["tests.unit.test_a:1 imports fixture tests.helpers.area.thing"]
