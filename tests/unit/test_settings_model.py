"""The settings are the one place configuration comes from (ADR 0059): every value a typed field, sections
set whole or key by key, flat legacy names still accepted, an unknown key refused with the file and key
named, and the documented precedence (file < environment < overrides)."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from hub.config import (
    LEGACY_KEYS,
    SECTIONS,
    DeliverySettings,
    FabricTimeouts,
    Settings,
    SettingsError,
    load_settings,
)
from hub.delivery.dispatcher import DeliveryOptions
from hub.delivery.egress import EgressPolicy
from hub.ledger.fabric import Timeouts, open_fabric_ledger

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
TOKEN = "tok-5a0c3e9d7b1f24680135"


@pytest.fixture(autouse=True)
def _no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no LEDGERHUB_* settings (the suite's own data dir variable aside)."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("LEDGERHUB_") and name.upper() != "LEDGERHUB_DATA_DIR":
            monkeypatch.delenv(name)


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, object]) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(values))
    monkeypatch.setenv("LEDGERHUB_CONFIG", str(path))
    return path


# ---- names that worked before keep working ----


def test_keyword_constructors_and_flat_legacy_keys(tmp_path: Path) -> None:
    settings = Settings(provider_org="P1MSP", fabric_gateway="peer0:7051", webhook_allow_private=True,
                        webhook_allow_http=True, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    assert (settings.provider_org, settings.fabric_gateway) == ("P1MSP", "peer0:7051")
    assert settings.webhooks.allow_private and settings.webhooks.allow_http
    assert settings.webhook_allow_private and settings.webhook_allow_http  # the old attribute names read
    assert (settings.tls.cert, settings.tls.key) == (tmp_path / "c.pem", tmp_path / "k.pem")
    policy = EgressPolicy.from_settings(settings)
    assert policy.allow_private and policy.allow_http
    assert not EgressPolicy.from_settings(Settings()).allow_http


def test_existing_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGERHUB_FABRIC_GATEWAY", "peer0.provider:7051")
    monkeypatch.setenv("LEDGERHUB_TOKENS", json.dumps({TOKEN: {"org": "ProviderMSP", "role": "provider"}}))
    monkeypatch.setenv("LEDGERHUB_DATABASE_URL", "sqlite:///x.sqlite")
    monkeypatch.setenv("LEDGERHUB_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("LEDGERHUB_TLS_CERT", str(tmp_path / "c.pem"))
    monkeypatch.setenv("LEDGERHUB_TLS_KEY", str(tmp_path / "k.pem"))
    monkeypatch.setenv("LEDGERHUB_INGEST_PIPELINE_DEPTH", "3")
    settings = load_settings()
    assert settings.fabric_gateway == "peer0.provider:7051"
    assert [t.get_secret_value() for t in settings.tokens] == [TOKEN]
    assert settings.effective_database_url == "sqlite:///x.sqlite"
    assert settings.webhooks.allow_http and not settings.webhooks.allow_private
    assert settings.tls.cert == tmp_path / "c.pem" and settings.tls.key == tmp_path / "k.pem"
    assert settings.ingest_pipeline_depth == 3


def test_legacy_keys_in_a_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, monkeypatch, {"webhook_allow_private": True, "tls_cert": "/etc/hub/c.pem",
                                    "provider_org": "FileMSP"})
    settings = load_settings()
    assert settings.webhooks.allow_private and settings.tls.cert == Path("/etc/hub/c.pem")
    assert settings.provider_org == "FileMSP"
    assert set(LEGACY_KEYS) == {"webhook_allow_private", "webhook_allow_http", "tls_cert", "tls_key"}


# ---- the sections ----


def test_sections_from_a_file_and_key_by_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch, {"delivery": {"max_attempts": 3, "concurrency": 2},
                                    "webhooks": {"timeout_seconds": 2.5},
                                    "fabric_timeouts": {"commit": 90}})
    monkeypatch.setenv("LEDGERHUB_DELIVERY__CONCURRENCY", "6")  # one key of the section, over the file's
    monkeypatch.setenv("LEDGERHUB_FABRIC_TIMEOUTS", json.dumps({"evaluate": 7}))  # the section as JSON
    monkeypatch.setenv("LEDGERHUB_LEDGER_BLOCK_MAX_TXS", "50")
    settings = load_settings()
    assert (settings.delivery.max_attempts, settings.delivery.concurrency) == (3, 6)  # merged key by key
    assert settings.webhooks.timeout_seconds == 2.5
    assert (settings.fabric_timeouts.commit, settings.fabric_timeouts.evaluate) == (90, 7)
    assert settings.ledger_block_max_txs == 50
    options = DeliveryOptions.from_settings(settings)
    assert (options.max_attempts, options.concurrency, options.batch) == (3, 6, 16)


def test_defaults_match_the_objects_they_configure() -> None:
    """The sections mirror DeliveryOptions and the Fabric client's Timeouts field for field, value for value
    (so a setting left out changes nothing)."""
    assert DeliveryOptions.from_settings(Settings()) == DeliveryOptions()
    assert [f.name for f in fields(DeliveryOptions)] == list(DeliverySettings.model_fields)
    assert Timeouts(**FabricTimeouts().model_dump()) == Timeouts()
    assert [f.name for f in fields(Timeouts)] == list(FabricTimeouts.model_fields)


def test_the_fabric_client_gets_the_configured_timeouts(tmp_path: Path) -> None:
    from tests.unit.test_gateway_open import _network

    settings = Settings(ledger="fabric", fabric_network_dir=_network(tmp_path),
                        fabric_timeouts={"commit": 12, "warmup": 1.5})
    ledger = open_fabric_ledger(settings, {})
    try:
        assert ledger.timeouts == Timeouts(commit=12, warmup=1.5)
    finally:
        ledger.close()


def test_the_embedded_ledger_gets_the_block_cutting_settings(tmp_path: Path) -> None:
    from hub.keys.signer import SoftwareSigner
    from hub.ledger import open_ledger

    settings = Settings(data_dir=tmp_path, ledger_block_max_txs=7, ledger_block_timeout_ms=40)
    signers = {org: SoftwareSigner() for org in ("ProviderMSP", "CustomerMSP")}
    ledger = open_ledger(settings, signers)
    try:
        committer = ledger._committer  # type: ignore[attr-defined]
        assert (committer._max_txs, committer._timeout) == (7, 0.04)
    finally:
        ledger.close()


def test_updated_changes_one_key_of_a_section_and_keeps_the_rest() -> None:
    settings = Settings(webhooks={"allow_private": True, "timeout_seconds": 3})
    changed = settings.updated(webhook_allow_http=True, delivery={"batch": 2})
    assert changed.webhooks.model_dump() == {"allow_private": True, "allow_http": True, "timeout_seconds": 3}
    assert changed.delivery.batch == 2 and changed.delivery.max_attempts == 8


# ---- refusals: an unknown key is a start-up error, never ignored ----


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"fabric_gatway": "peer0:7051"}, "fabric_gatway: unknown setting"),
        ({"delivery": {"max_atempts": 3}}, "delivery.max_atempts: unknown setting"),
        ({"webhooks": {"allow_privat": True}}, "webhooks.allow_privat: unknown setting"),
        ({"tokens": {TOKEN: {"org": "P", "role": "provider", "expire_at": "2020-01-01"}}},
         "tokens.<token>.expire_at: unknown setting"),
        ({"delivery": {"concurrency": 0}}, "delivery.concurrency: Input should be greater than or equal"),
        ({"tokens": {TOKEN: {"org": "P", "role": "root"}}}, "tokens.<token>.role: Input should be"),
    ],
)
def test_a_typo_or_a_wrong_value_in_the_file_is_a_clear_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, object], named: str
) -> None:
    path = _config(tmp_path, monkeypatch, values)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert str(path) in message and named in message
    assert TOKEN not in message  # a token is a secret, even in an error
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no chained input


def test_a_file_that_is_not_an_object_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, monkeypatch, ["provider_org"])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="a JSON object expected"):
        load_settings()
    (tmp_path / "settings.json").write_text("{provider_org: 1")
    with pytest.raises(SettingsError, match=r"settings\.json"):
        load_settings()


def test_a_typo_as_a_keyword_or_in_a_section_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="fabric_gatway"):
        Settings(fabric_gatway="peer0:7051")  # type: ignore[call-arg]
    monkeypatch.setenv("LEDGERHUB_DELIVERY__MAX_ATEMPTS", "3")
    with pytest.raises(SettingsError, match=r"delivery\.max_atempts: unknown setting"):
        load_settings()


def test_other_ledgerhub_variables_are_not_settings_and_do_not_break_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Test and tool switches share the prefix: the environment source reads only the settings' names."""
    for name, value in {"LEDGERHUB_FABRIC_REQUIRED": "1", "LEDGERHUB_FABRIC_HSM": "1",
                        "LEDGERHUB_FABRIC_BIN": "/opt/fabric/bin", "LEDGERHUB_FABRIC_PORT_BASE": "27050",
                        "LEDGERHUB_TOKEN": "tok", "LEDGERHUB_FABRIC_SRC": "/x.tgz",
                        "LEDGERHUB_EMULATOR_SAP_PASSWORD": "pw", "LEDGERHUB_TLS_CIPHERS": "x"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == Settings()


# ---- precedence (load_settings' docstring) ----


def test_file_then_environment_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, monkeypatch, {"provider_org": "FileP", "customer_org": "FileC", "auditor_org": "FileA",
                                    "webhook_allow_http": False, "webhooks": {"timeout_seconds": 4}})
    monkeypatch.setenv("LEDGERHUB_PROVIDER_ORG", "EnvP")
    monkeypatch.setenv("LEDGERHUB_CUSTOMER_ORG", "EnvC")
    monkeypatch.setenv("LEDGERHUB_WEBHOOK_ALLOW_HTTP", "true")  # legacy variable over the file's legacy key
    settings = load_settings(customer_org="ArgC")
    assert (settings.provider_org, settings.customer_org, settings.auditor_org) == ("EnvP", "ArgC", "FileA")
    assert settings.webhooks.allow_http and settings.webhooks.timeout_seconds == 4
    monkeypatch.setenv("LEDGERHUB_WEBHOOKS__ALLOW_HTTP", "false")  # the section's own name ranks above
    assert not load_settings().webhooks.allow_http
    assert load_settings(webhook_allow_http=True).webhooks.allow_http  # an override above both


def test_a_mapping_setting_is_replaced_whole_only_sections_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch, {"parties": {"ProviderMSP": {"name": "P"}, "CustomerMSP": {"name": "C"}}})
    monkeypatch.setenv("LEDGERHUB_PARTIES", json.dumps({"ProviderMSP": {"name": "P2"}}))
    assert load_settings().parties == {"ProviderMSP": {"name": "P2"}}  # as before the sections
    sections = [name for name, field in Settings.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)]
    assert sorted(sections) == sorted(SECTIONS)


# ---- secrets ----


def test_secrets_stay_hidden_and_sections_hold_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, monkeypatch, {"tokens": {TOKEN: {"org": "ProviderMSP", "role": "provider"}},
                                    "pkcs11_pin": "pin-2718281828", "delivery": {"batch": 4}})
    settings = load_settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert TOKEN not in shown and "pin-2718281828" not in shown
    assert isinstance(next(iter(settings.tokens)), SecretStr) and settings.pin() == "pin-2718281828"
    for section in (settings.delivery, settings.webhooks, settings.tls, settings.fabric_timeouts):
        assert isinstance(section, BaseModel)


# ---- the reference lists every setting ----


def test_docs_list_every_setting() -> None:
    text = DOCS.read_text()
    missing = []
    for name, field in Settings.model_fields.items():
        if f"LEDGERHUB_{name.upper()}" not in text:
            missing.append(f"LEDGERHUB_{name.upper()}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            missing += [f"{name}.{key}" for key in section.model_fields if f"`{name}.{key}`" not in text]
    legacy = [f"LEDGERHUB_{flat.upper()}" for flat in LEGACY_KEYS]
    missing += [name for name in legacy if name not in text]
    assert missing == []
    documented = set(re.findall(r"LEDGERHUB_([A-Z0-9_]+)", text))
    assert "CONFIG" in documented
