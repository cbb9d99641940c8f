"""Every secret the settings hold stays out of repr, str and model_dump_json, and the readers still get
the real values where they need them (authentication, the database, a connector's own settings)."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

import hub.config as config
from hub.config import Settings, TokenGrant, load_settings
from hub.delivery.dispatcher import connector_settings

TOKEN = "tok-9f8e7d6c5b4a39281706"
PIN = "pin-31415926535"
DB_PASSWORD = "db-pw-27182818284"
SAP_PASSWORD = "sap-pw-16180339887"
ORACLE_SECRET = "oracle-cs-14142135623"
ORACLE_BEARER = "oracle-bearer-17320508075"
OVERRIDE_PASSWORD = "override-pw-22360679774"
SECRETS = (TOKEN, PIN, DB_PASSWORD, SAP_PASSWORD, ORACLE_SECRET, ORACLE_BEARER, OVERRIDE_PASSWORD)


def settings_with_every_secret() -> Settings:
    return Settings(
        tokens={TOKEN: TokenGrant(org="ProviderMSP", role="provider")},
        pkcs11_pin=PIN,
        database_url=f"postgresql+psycopg://hub:{DB_PASSWORD}@db.internal/ledgerhub",
        connectors={
            "sap-soap": {"endpoint": "https://sap.example/je", "username": "LH", "password": SAP_PASSWORD,
                         "customer": {"password": OVERRIDE_PASSWORD}},
            "oracle-rest": {"base_url": "https://oracle.example",
                            "auth": {"type": "oauth", "token_url": "https://idp.example/token",
                                     "client_id": "lh", "client_secret": ORACLE_SECRET}},
            "oracle-bearer": {"auth": {"type": "bearer", "token": ORACLE_BEARER}},
        },
    )


def test_no_secret_in_repr_str_or_json() -> None:
    settings = settings_with_every_secret()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        leaked = [secret for secret in SECRETS if secret in shown]
        assert leaked == [], f"secrets shown: {leaked}"


def test_readers_get_the_real_values() -> None:
    settings = settings_with_every_secret()
    assert [t.get_secret_value() for t in settings.tokens] == [TOKEN]
    assert settings.pin() == PIN
    assert DB_PASSWORD in settings.effective_database_url
    sap = connector_settings(settings, "sap-soap", "customer")
    assert sap["password"] == OVERRIDE_PASSWORD and sap["username"] == "LH"
    assert connector_settings(settings, "sap-soap", "provider")["password"] == SAP_PASSWORD
    oracle = connector_settings(settings, "oracle-rest", "provider")
    assert oracle["auth"]["client_secret"] == ORACLE_SECRET
    assert oracle["auth"]["token_url"].startswith("https")
    assert connector_settings(settings, "oracle-bearer", "provider")["auth"]["token"] == ORACLE_BEARER
    assert config.reveal({"a": [SecretStr("x")]}) == {"a": ["x"]}


def test_secrets_from_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"connectors": {"sap-soap": {"password": SAP_PASSWORD}}}))
    monkeypatch.setenv("LEDGERHUB_CONFIG", str(config))
    monkeypatch.setenv("LEDGERHUB_TOKENS", json.dumps({TOKEN: {"org": "CustomerMSP", "role": "customer"}}))
    monkeypatch.setenv("LEDGERHUB_DATABASE_URL", f"postgresql+psycopg://hub:{DB_PASSWORD}@db/ledgerhub")
    settings = load_settings()
    assert {t.get_secret_value(): g.role for t, g in settings.tokens.items()} == {TOKEN: "customer"}
    assert settings.effective_database_url.endswith(f"{DB_PASSWORD}@db/ledgerhub")
    assert connector_settings(settings, "sap-soap", "provider")["password"] == SAP_PASSWORD
    assert not any(secret in repr(settings) for secret in SECRETS)


def test_no_database_url_means_sqlite_in_the_data_dir(tmp_path) -> None:
    assert Settings(data_dir=tmp_path).effective_database_url == f"sqlite:///{tmp_path / 'hub.sqlite'}"
