"""Suite-wide settings and fixtures. pytest finds every fixture by name; no test imports one
(tests/README.md).

- here and in the fixture modules registered below: fixtures more than one tier uses;
- tests/<tier>/conftest.py: fixtures of one tier (unit, integration, fabric, e2e, scenarios);
- a test module: fixtures only that module uses (it may override a conftest fixture of the same name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixture modules shared by several tiers, registered once for the whole suite (pytest_plugins is honoured
# only in this top-level conftest). Registered, a session-scoped fixture is one per session: the real Fabric
# network (`fabric_network`) comes up once, however many modules ask for it. (Imported into a module by name,
# a fixture is a separate fixture in each module, and a session one is created once per module.)
pytest_plugins = (
    "tests.helpers.fabric_network",  # fabric_network: the session's real Fabric network
    "tests.helpers.softhsm",  # hsm_env, hsm_token, hsm_manager, pkcs11_settings, pkcs11_signers
)

ROOT = Path(__file__).resolve().parent.parent
SHARED_ERP = ROOT.parent / "shared" / "erp"


@pytest.fixture(scope="session")
def shared_erp() -> Path:
    """The real ERP interface files (../shared/erp). Tests that need them skip, loudly, without them."""
    if not SHARED_ERP.is_dir():
        pytest.skip(f"real ERP interface files not found at {SHARED_ERP}: ../shared/erp is absent")
    return SHARED_ERP


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the developer's ./.ledgerhub."""
    if "LEDGERHUB_DATA_DIR" not in os.environ or os.environ.get("CI_KEEP_DATA_DIR") != "1":
        monkeypatch.setenv("LEDGERHUB_DATA_DIR", str(tmp_path / "ledgerhub-data"))


# --- databases: every test that takes `database_url` runs on SQLite and on a real PostgreSQL server ---------


@pytest.fixture(scope="session")
def postgres_server():
    from tests.helpers.postgres import pg_bin, running_postgres

    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries missing in CI: make test should have installed them")
        pytest.skip("PostgreSQL server binaries not installed (make test installs the Debian package)")
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database()


# --- suite-wide secret scan: no remembered secret (the HSM PINs) in anything the suite wrote ----------------

# scripts/run-tests.sh runs the Fabric tier beside the rest in a second pytest process; each names its log.
_SUITE_OUTPUT = ROOT / "test-artifacts" / os.environ.get("LEDGERHUB_SUITE_LOG", "suite-output.log")
_suite_output = None
_basetemp: Path | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _suite_output
    _SUITE_OUTPUT.parent.mkdir(exist_ok=True)
    _suite_output = _SUITE_OUTPUT.open("w", encoding="utf-8")


@pytest.fixture(scope="session", autouse=True)
def _remember_basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _basetemp
    _basetemp = tmp_path_factory.getbasetemp()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Every test's captured stdout, stderr and log lines, passing or not, go to suite-output.log."""
    if _suite_output is None:
        return
    for title, content in report.sections:
        _suite_output.write(f"===== {report.nodeid} | {title}\n{content}\n")
    if report.failed:
        _suite_output.write(f"===== {report.nodeid} | failure\n{report.longreprtext}\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.helpers import leakscan

    global _suite_output
    if _suite_output is None:
        return
    _suite_output.close()
    _suite_output = None
    secrets = leakscan.remembered()
    if not secrets:
        return
    files = [_SUITE_OUTPUT, *(leakscan.log_like_files(_basetemp) if _basetemp else [])]
    hits = leakscan.scan_files(files, secrets)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write("\n")
    if hits:
        where = "\n".join(f"  {path}:{line}" for path, line in hits[:50])
        if reporter:
            reporter.write_line(f"SECRET LEAK: an HSM PIN is in what the suite wrote:\n{where}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line(
            f"secret scan: {len(secrets)} PIN(s) searched in {len(files)} files the suite wrote "
            f"(captured output of every test, logs of its subprocesses): none found"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the real network is in the Fabric tier, marked or not.

    scripts/run-tests.sh runs `-m fabric` and `-m "not fabric"` in two processes; an unmarked test using the
    network would bring up a second one in the other process. Runs before `-m` deselects.
    """
    for item in items:
        uses_network = "fabric_network" in getattr(item, "fixturenames", ())
        if uses_network and item.get_closest_marker("fabric") is None:
            item.add_marker(pytest.mark.fabric)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests.helpers.lifecycle import AT_UNCONFIGURE

    for close in AT_UNCONFIGURE:
        close()
