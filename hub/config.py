"""Settings from the environment (`LEDGERHUB_*`) and an optional settings file (`LEDGERHUB_CONFIG`, JSON).

Secrets (HSM PIN, ERP passwords and client secrets, bearer tokens, the database URL's password) are read
here and never appear in a repr, a `str`, a `model_dump_json` or a log line: they are `SecretStr`. A bearer
token is the key of `tokens`, so the keys are `SecretStr`; secret-named fields inside a connector's block
(`SECRET_FIELDS`, at any depth) are wrapped on load and revealed only where a connector is built
(`reveal`). Readers call `.get_secret_value()` at the point of use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["provider", "customer", "auditor", "operator", "device"]

# keys inside a connector's settings block whose values are secrets (wrapped in SecretStr at any depth)
SECRET_FIELDS = frozenset({
    "password", "passwd", "client_secret", "secret", "token", "api_key", "apikey", "pin", "passphrase",
    "private_key", "access_token", "refresh_token",
})


def _hide(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _hide(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    if key is not None and key.lower() in SECRET_FIELDS and isinstance(value, str):
        return SecretStr(value)
    return value


def secret_value(value: SecretStr | str) -> str:
    """The value of a secret; also takes a plain str (settings built with `model_copy(update=...)` skip
    validation, so a secret given there stays a str: prefer `Settings.updated`)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def reveal(value: Any) -> Any:
    """The same structure with every `SecretStr` replaced by its value: for handing a connector its own
    settings (connectors take plain mappings), nowhere else."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


class TokenGrant(BaseModel):
    org: str
    role: Role
    expires_at: str | None = None  # ISO 8601; an expired token is refused with `token_expired`
    # "org": the grant reaches its own org's objects only. "platform" (operators only, never the default):
    # an operator of the hub itself who sees and acts on every org's deliveries and keys (ADR 0029)
    scope: Literal["org", "platform"] = "org"

    @model_validator(mode="after")
    def _platform_only_for_operators(self) -> TokenGrant:
        if self.scope == "platform" and self.role != "operator":
            raise ValueError(f"scope 'platform' is for operator tokens only, not {self.role!r}")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERHUB_", extra="ignore")

    data_dir: Path = Path("./.ledgerhub")
    ledger: Literal["embedded", "fabric"] = "embedded"
    database_url: SecretStr | None = None  # may carry a password (postgresql+psycopg://user:pw@host/db)
    tokens: dict[SecretStr, TokenGrant] = Field(default_factory=dict)  # bearer token -> grant
    # orgs of the network and their roles on it
    provider_org: str = "ProviderMSP"
    customer_org: str = "CustomerMSP"
    auditor_org: str = "AuditorMSP"
    # further orgs this hub holds a ledger identity for (e.g. a second customer of a shared asset)
    extra_ledger_orgs: list[str] = Field(default_factory=list)
    # signing keys: "software" (tests, demo without SoftHSM) or "pkcs11" (HSM)
    signer: Literal["software", "pkcs11"] = "software"
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "ledgerhub"  # noqa: S105 - a label, not a secret
    pkcs11_pin: SecretStr | None = None
    pkcs11_pin_file: Path | None = None
    # ingestion
    max_body_bytes: int = 1_000_000
    max_readings_per_message: int = 1000
    batch_max_messages: int = 500
    batch_max_wait_ms: int = 20
    # per-caller request rate limit (hub/api/limits.py); 0 = off. burst 0 = one second's worth
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0
    # failed authentications (401) per client address per minute, then 429 too_many_failed_logins; 0 = off
    auth_failures_per_minute: int = Field(default=10, ge=0)
    # scheduler
    close_grace_seconds: int = 3600
    # SEPA direct debit: where pain.008 collection files are dropped (default: {data_dir}/sepa-drop)
    sepa_drop_dir: Path | None = None
    scheduler_enabled: bool = True
    # delivery and connectors: {"sap-soap": {"endpoint": ..., "wsdl": ...}, ...}
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # alert webhooks (URLs chosen by tenants, hub/delivery/egress.py): https to public addresses only,
    # unless the operator allows private/loopback/link-local targets or plain http
    webhook_allow_private: bool = False
    webhook_allow_http: bool = False
    # party master data by org (name, VAT id, address, ERP ids), see connectors.base.Party
    parties: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # embedded ledger: how far (seconds) a transaction proposal's timestamp may be from the endorsing
    # peers' clock before the contract refuses it (`tx_timestamp_skew`, ADR 0027); 0 turns the check off
    ledger_max_clock_skew_seconds: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    # fabric
    fabric_gateway: str | None = None
    fabric_tls_root: Path | None = None
    fabric_channel: str = "billing"
    fabric_chaincode: str = "billing"
    fabric_network_dir: Path | None = None
    # plaintext gRPC to the gateway: only when said explicitly (a local test peer), never as a fallback
    fabric_insecure: bool = False

    # --- ingestion capacity (hub/ingest_capacity.py, ADR 0029): past a bound, 503 ingest_saturated ---
    ingest_edge_threads: int = Field(default=8, ge=1)  # threads checking posts (schema, owner, signature)
    ingest_edge_backlog: int = Field(default=256, ge=0)  # posts that may wait for one of those threads
    ingest_max_pending: int = Field(default=5000, ge=1)  # messages queued or committing (wait=false too)
    ingest_max_waiting: int = Field(default=2000, ge=1)  # wait=true posts waiting for their commit
    ingest_wait_seconds: float = Field(default=120.0, gt=0)  # then 503 ingest_timeout (replay to learn)
    ingest_retry_after_seconds: int = Field(default=1, ge=1)  # Retry-After of ingest and ledger 503s
    # drained batches in flight at once (endorse/submit/commit overlap; hub/ingest_pipeline.py, ADR 0039);
    # unset: PIPELINE_DEPTH_DEFAULT for the ledger in use
    ingest_pipeline_depth: int | None = Field(default=None, ge=1, le=64)

    @field_validator("connectors", mode="after")
    @classmethod
    def _hide_connector_secrets(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return _hide(value)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "hub.sqlite"

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.sqlite_path}"

    def updated(self, **values: Any) -> Settings:
        """A copy with `values` changed, validated like any settings (`model_copy(update=...)` is not:
        a token or password given there would stay a plain, printable str)."""
        return type(self)(**{**self.model_dump(), **values})

    def pin(self) -> str | None:
        """The HSM PIN from LEDGERHUB_PKCS11_PIN or the file LEDGERHUB_PKCS11_PIN_FILE names."""
        if self.pkcs11_pin is not None:
            return self.pkcs11_pin.get_secret_value()
        if self.pkcs11_pin_file is not None:
            return self.pkcs11_pin_file.read_text().strip()
        return None


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the settings file named by LEDGERHUB_CONFIG, then explicit overrides."""
    file_values: dict[str, Any] = {}
    config_path = os.environ.get("LEDGERHUB_CONFIG")
    if config_path:
        file_values = json.loads(Path(config_path).read_text())
    env_settings = Settings()
    merged = {**file_values, **env_settings.model_dump(exclude_unset=True), **overrides}
    return Settings(**merged)
