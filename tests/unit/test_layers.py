"""The hub's shape (ADR 0062): the import-linter layer contracts hold, no code below the API imports it, the
app's services are typed fields (the former `extras` names only as a view for old tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.api.deps import Services
from hub.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is in the test extra: pip install -e '.[test]'"
    result = subprocess.run([lint_imports], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_string_keyed_service_lookup_in_the_hub() -> None:
    offenders = []
    for path in (ROOT / "hub").rglob("*.py"):
        if path == ROOT / "hub" / "api" / "deps.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.extras\b", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    # hub/portal/bench.py is lane h-client's (moved onto the contract client at the same time)
    assert [o for o in offenders if not o.startswith("hub/portal/bench.py")] == []


def test_app_factory_has_no_optional_imports() -> None:
    source = (ROOT / "hub" / "api" / "app.py").read_text()
    assert "except ImportError" not in source and "ModuleNotFoundError" not in source
    assert "importlib" not in source


def test_services_fields_and_the_compatibility_view() -> None:
    services = Services(Settings(), None, None)
    view = services.extras
    assert "clock" not in view and view.get("clock") is None and set(view) == {"areas", "portal_verified"}
    view["clock"] = clock = lambda: None
    assert services.clock is clock and view["clock"] is clock and set(view) == {"areas", "clock",
                                                                                 "portal_verified"}
    del view["clock"]
    assert services.clock is None
    with pytest.raises(KeyError):
        view["no_such_service"] = 1
    with pytest.raises(KeyError):
        view["gateway"]  # unset field: as a missing key, like the dict was
    assert services.portal_verified == {} and services.areas == []
