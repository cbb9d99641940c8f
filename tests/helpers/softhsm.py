"""SoftHSM2 fixtures: one private token per pytest session, PKCS#11 signers and key managers on it.

SoftHSM reads SOFTHSM2_CONF once when the library initialises, and python-pkcs11 keeps one library
instance per process, so the whole session shares one conf + token directory (a temp dir; never the
system one). Tests that need a *different* token (CLI `keys init`, wrong PIN) run a subprocess.

Registered for the whole suite by tests/conftest.py (`pytest_plugins`): a test asks for these fixtures by
name and never imports them.

- `hsm_env`: SoftHsmEnv(conf, token_label, pin, module, base) for the session's token.
- `hsm_token`: the process-wide logged-in `TokenSession` on it.
- `hsm_manager`: a fresh `KeyManager` (its own registry + audit log under tmp_path) with org keys.
- `pkcs11_signers`: {org: Signer} endorsement signers on the token (for EmbeddedLedger(signers=...)).
- `pkcs11_settings`: `Settings(signer="pkcs11", ...)` for code that calls `hub.keys.build_signers`.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.config import Settings
from hub.keys.pkcs11 import SOFTHSM_MODULE, TokenSession, token_session
from hub.keys.signer import Signer, SoftwareSigner
from tests.helpers import leakscan

ORGS = ("ProviderMSP", "CustomerMSP", "AuditorMSP")


@dataclass(frozen=True)
class SoftHsmEnv:
    base: Path
    conf: Path
    token_label: str
    pin: str
    module: str = SOFTHSM_MODULE

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf), **extra}


def softhsm_available() -> bool:
    return Path(SOFTHSM_MODULE).exists() and shutil.which("softhsm2-util") is not None


_ENV: SoftHsmEnv | None = None  # one token per process, however many modules import the fixture


def _session_env(make_base: Callable[[], Path]) -> SoftHsmEnv:
    """The process's token, initialised on first use under `make_base()`."""
    global _ENV
    if _ENV is None:
        from hub.keys.softhsm import ensure_softhsm_conf, init_token

        base = make_base()
        conf = ensure_softhsm_conf(base)  # sets SOFTHSM2_CONF for this process
        pin = "t-" + secrets.token_hex(12)
        leakscan.remember(pin)  # searched for in everything the suite writes (tests/conftest.py)
        init_token(conf, "ledgerhub-test", pin, SOFTHSM_MODULE)
        _ENV = SoftHsmEnv(base=base, conf=conf, token_label="ledgerhub-test", pin=pin)
    return _ENV


@pytest.fixture(scope="session")
def hsm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmEnv]:
    """One token per session. The module global also keeps it one per process for code outside the
    fixtures (`endorsement_signers`); the library can only see one SoftHSM config at a time."""
    global _ENV
    if not softhsm_available():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    if _ENV is not None:
        yield _ENV
        return
    previous = os.environ.get("SOFTHSM2_CONF")
    env = _session_env(lambda: tmp_path_factory.mktemp("softhsm"))
    yield env
    _ENV = None
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def _private_base() -> Path:
    """A token directory for a process outside pytest's fixtures (a test's subprocess), removed at exit."""
    base = Path(tempfile.mkdtemp(prefix="ledgerhub-softhsm-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return base


def endorsement_signers(orgs: Sequence[str] = ORGS) -> dict[str, Signer]:
    """New endorsement keys, one per org, on the process's SoftHSM2 token: what the integration tests'
    ledgers sign with (issue: no software signer outside unit tests). Fresh keys on every call, as tests
    that tell one ledger's identities from another's need. Only where SoftHSM2 is not installed (a machine
    that has not run `make test`'s package step) do they fall back to software keys."""
    if not softhsm_available():
        return {org: SoftwareSigner() for org in orgs}
    env = _session_env(_private_base)
    token = token_session(env.module, env.token_label, env.pin)
    return {org: token.generate_ec_key(f"test-endorser-{org}") for org in orgs}


@pytest.fixture(scope="session")
def hsm_token(hsm_env: SoftHsmEnv) -> TokenSession:
    return token_session(hsm_env.module, hsm_env.token_label, hsm_env.pin)


@pytest.fixture
def hsm_manager(hsm_token: TokenSession, tmp_path: Path) -> Iterator[object]:
    from hub.keys.manager import KeyManager, Pkcs11Backend

    manager = KeyManager(tmp_path / "keys", Pkcs11Backend(hsm_token))
    manager.ensure_org_keys(ORGS, ["ProviderMSP"])
    yield manager
    manager.close()


@pytest.fixture
def pkcs11_settings(hsm_env: SoftHsmEnv, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "ledgerhub-hsm",
        signer="pkcs11",
        pkcs11_module=hsm_env.module,
        pkcs11_token_label=hsm_env.token_label,
        pkcs11_pin=hsm_env.pin,
    )


@pytest.fixture
def pkcs11_signers(pkcs11_settings: Settings) -> dict[str, Signer]:
    """Endorsement signers per org, keys on the SoftHSM token, uses logged to the key audit log."""
    from hub.keys import build_signers

    return build_signers(pkcs11_settings)
