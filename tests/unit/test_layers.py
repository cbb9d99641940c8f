"""The hub's shape (ADR 0062): the import-linter layer contracts hold, no code below the API imports it, the
app's services are typed fields: no `extras` bag, no string-keyed look-up of a service anywhere."""

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


def test_no_string_keyed_service_lookup_in_the_hub_or_tests() -> None:
    offenders = []
    for top in ("hub", "tests"):
        for path in (ROOT / top).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\.extras\b", line) and path != Path(__file__).resolve():
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_app_factory_has_no_optional_imports() -> None:
    source = (ROOT / "hub" / "api" / "app.py").read_text()
    assert "except ImportError" not in source and "ModuleNotFoundError" not in source
    assert "importlib" not in source


def test_services_has_typed_fields_and_no_extras_view() -> None:
    services = Services(Settings(), None, None)
    assert not hasattr(services, "extras")
    assert not hasattr(Services, "extras")
    with pytest.raises(AttributeError):
        _ = services.extras
    assert services.clock is None and services.gateway is None and services.ingestor is None
    services.clock = clock = lambda: None
    assert services.clock is clock
    assert services.portal_verified == {} and services.areas == []
