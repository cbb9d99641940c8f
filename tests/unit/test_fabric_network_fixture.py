"""The `fabric_network` fixture is one network per session, even when several test modules import it (each
import is a fixture definition of its own to pytest). Bring-up is replaced by a counter: this checks the
fixture's wiring, not Fabric (tests/fabric does that)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = '''
import types

import pytest

from network import admin, manage
from tests.helpers import fabric_network

UPS = []
SEEN = []


@pytest.fixture(scope="session", autouse=True)
def _no_real_network(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # undone at the end: the outer session keeps the real ones
        mp.setattr(admin, "unavailable_reason", lambda: None)
        mp.setattr(manage, "up", lambda **kw: UPS.append(kw) or {"channel": "billing"})
        mp.setattr(manage, "make_layout",
                   lambda run_dir, port_base: types.SimpleNamespace(pids_dir=run_dir, run_dir=run_dir))
        mp.setattr(manage, "down", lambda run_dir: None)
        mp.setattr(fabric_network, "recorded", lambda pids_dir: [])
        # the outer session may hold a real network already (make test runs tests/fabric first)
        mp.setattr(fabric_network, "_RUNNING", [])
        yield
'''

MODULE = '''
from tests.helpers.fabric_network import fabric_network_fixture  # noqa: F401
import conftest


def test_uses_the_network(fabric_network):
    conftest.SEEN.append(id(fabric_network))
'''

LAST = '''
import conftest


def test_one_network_was_brought_up():
    assert len(conftest.SEEN) == 3
    assert len(set(conftest.SEEN)) == 1
    assert len(conftest.UPS) == 1
'''


@pytest.mark.unit
def test_modules_importing_the_fixture_share_one_network(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=MODULE, test_b=MODULE, test_c=MODULE, test_z=LAST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)
    from network import manage

    assert manage.up.__module__ == "network.manage"  # the fakes are gone again
