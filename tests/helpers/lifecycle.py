"""Clean-ups for state a test module builds at import time (schemathesis needs its app before collection).

When `-m` deselects such a module's tests its fixtures never run, so whatever it started (a hub with a
non-daemon event-loop thread) would keep the process alive after the run. tests/conftest.py calls every
function registered here from `pytest_unconfigure`; each must be idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

AT_UNCONFIGURE: list[Callable[[], None]] = []
