"""Fixtures of the e2e tier (pytest finds them by name; a module never imports them).

- `served`: a real hub server (uvicorn on a free port) on a fresh embedded ledger: (base URL, ledger);
- `hub`: its base URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.api.app import create_app
from tests.helpers.api import embedded_ledger, hub_settings
from tests.helpers.browser import serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    ledger = embedded_ledger(tmp_path / "ledger")
    app = create_app(hub_settings(tmp_path), ledger, scheduler=False)
    with serve(app) as base:
        yield base, ledger
    ledger.close()


@pytest.fixture
def hub(served: tuple[str, Any]) -> str:
    return served[0]
