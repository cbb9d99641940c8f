"""Settings from the environment (`LEDGERHUB_*`) and an optional settings file (`LEDGERHUB_CONFIG`, JSON).

The one place the hub's configuration comes from (ADR 0059; every setting: docs/settings.md). Every value
is a typed field; related values sit in nested sections (`delivery`, `webhooks`, `tls`, `fabric_timeouts`)
set as a JSON object or one key at a time (`LEDGERHUB_DELIVERY__MAX_ATTEMPTS=3`, `"delivery": {...}`).
An unknown key (a typo in a settings file or a keyword) is refused (`extra="forbid"`): `load_settings`
raises `SettingsError` naming the file and the key. Unknown `LEDGERHUB_*` environment variables are not
settings and are left alone (test and tool switches such as LEDGERHUB_FABRIC_REQUIRED share the prefix).
Flat names from before the sections (`webhook_allow_http`, `LEDGERHUB_TLS_CERT`, ...) keep working:
`LEGACY_KEYS` maps them into their section, and `Settings.webhook_allow_*` still read.

Secrets (HSM PIN, ERP passwords and client secrets, bearer tokens, the database URL's password) are read
here and never appear in a repr, a `str`, a `model_dump_json` or a log line: they are `SecretStr`. A bearer
token is the key of `tokens`, so the keys are `SecretStr`; secret-named fields inside a connector's block
(`SECRET_FIELDS`, at any depth) are wrapped on load and revealed only where a connector is built
(`reveal`). Readers call `.get_secret_value()` at the point of use.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

Role = Literal["provider", "customer", "auditor", "operator", "device"]

log = logging.getLogger(__name__)

# settings still accepted (existing files and environments set them) that nothing reads: name -> why; the
# first Settings built with one of them set logs a warning, once per process per name
DEPRECATED = {
    "batch_max_wait_ms": "nothing reads it: the ingestion pipeline drains whatever is waiting, up to "
                         "batch_max_messages (ADR 0039); remove it from the settings",
}
_warned: set[str] = set()

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


class SettingsError(ValueError):
    """The settings cannot be used (an unknown key, a wrong value): raised at start-up."""


class TokenGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt `expires_at` must not make a token eternal

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeliverySettings(_Section):
    """The ERP/webhook delivery engine (hub/delivery/dispatcher.py `DeliveryOptions` mirrors these fields)."""

    concurrency: int = Field(default=4, ge=1)  # deliveries in flight at once
    batch: int = Field(default=16, ge=1)  # outbox rows claimed per poll
    claim_seconds: float = Field(default=120.0, gt=0)  # a claim's lease; longer than lookup + deliver + write
    max_attempts: int = Field(default=8, ge=1)  # then dead letter
    backoff_base: float = Field(default=2.0, ge=0)  # seconds; the wait's ceiling doubles per attempt (jitter)
    backoff_cap: float = Field(default=300.0, ge=0)
    breaker_threshold: int = Field(default=5, ge=1)  # failures in a row that open a connector's breaker
    breaker_open_seconds: float = Field(default=30.0, ge=0)
    poll_seconds: float = Field(default=1.0, gt=0)  # outbox poll interval of the background loop
    reconcile_seconds: float = Field(default=300.0, gt=0)  # ledger <-> ERP reconciliation job interval


class WebhookSettings(_Section):
    """Alert and lifecycle webhooks (URLs chosen by tenants, hub/delivery/egress.py): https to public
    addresses only, unless the operator allows private/loopback/link-local targets or plain http."""

    allow_private: bool = False
    allow_http: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, allow_inf_nan=False)  # one POST, connect to answer


class TlsSettings(_Section):
    """`ledgerhub serve` over HTTPS (hub/api/tls.py); both or neither. CLI options take precedence."""

    cert: Path | None = None  # certificate chain (PEM)
    key: Path | None = None  # private key (PEM)


class FabricTimeouts(_Section):
    """Seconds the Fabric Gateway client waits (hub/ledger/fabric/client.py `Timeouts` mirrors these)."""

    evaluate: float = Field(default=30.0, gt=0)
    endorse: float = Field(default=30.0, gt=0)
    submit: float = Field(default=30.0, gt=0)
    commit: float = Field(default=60.0, gt=0)
    warmup: float = Field(default=120.0, ge=0)  # polling while discovery warms up ("no peer combination")
    unavailable: float = Field(default=10.0, ge=0)  # retrying an unreachable gateway before giving up
    commit_probe: float = Field(default=5.0, gt=0)  # waiting longer for a commit re-submits the same tx


# flat names from before the sections: settings-file key / keyword (and LEDGERHUB_<NAME upper>) -> section
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "webhook_allow_private": ("webhooks", "allow_private"),
    "webhook_allow_http": ("webhooks", "allow_http"),
    "tls_cert": ("tls", "cert"),
    "tls_key": ("tls", "key"),
}


def fold_legacy(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every flat legacy key moved into its section; the flat key wins over the same value
    given in the section (a flat key reaches the settings only from the file or a keyword, which rank
    above the environment). Idempotent."""
    if not any(key in values for key in LEGACY_KEYS):
        return values
    out = dict(values)
    for flat, (section, key) in LEGACY_KEYS.items():
        if flat not in out:
            continue
        value = out.pop(flat)
        current = out.get(section)
        if isinstance(current, BaseModel):
            current = current.model_dump(exclude_unset=True)
        block = dict(current or {})
        out[section] = {**block, key: value}
    return out


SECTIONS = ("delivery", "webhooks", "tls", "fabric_timeouts")


def merge_sources(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """`high` over `low`; a section (`SECTIONS`) merges key by key, any other value (a mapping such as
    `tokens` or `connectors` included) is replaced whole, as before there were sections."""
    out = dict(low)
    for key, value in high.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """LEDGERHUB_WEBHOOK_ALLOW_HTTP, LEDGERHUB_TLS_CERT, ...: the flat variables of `LEGACY_KEYS`, read into
    their sections. Ranks below the environment's own (`LEDGERHUB_WEBHOOKS__ALLOW_HTTP`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {name.lower(): value for name, value in os.environ.items()}
        out: dict[str, Any] = {}
        for flat, (section, key) in LEGACY_KEYS.items():
            value = env.get(f"ledgerhub_{flat}")
            if value:
                out.setdefault(section, {})[key] = value
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERHUB_", extra="forbid", env_nested_delimiter="__")

    data_dir: Path = Path("./.ledgerhub")
    ledger: Literal["embedded", "fabric"] = "embedded"
    database_url: SecretStr | None = None  # may carry a password (postgresql+psycopg://user:pw@host/db)
    tokens: dict[SecretStr, TokenGrant] = Field(default_factory=dict)  # bearer token -> grant
    # orgs of the network and their roles on it
    provider_org: str = "ProviderMSP"
    customer_org: str = "CustomerMSP"
    auditor_org: str = "AuditorMSP"
    # one hub per org (ADR 0065): the one org this hub acts for (`ledgerhub serve --org`); it holds only that
    # org's ledger identity, serves only its users and delivers only to its ERPs. None: the all-orgs hub
    org: str | None = None
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
    # a usage transaction's caps besides its messages (ADR 0069): Fabric's orderer refuses a transaction
    # over the channel's AbsoluteMaxBytes (10 MB); ≈ 600 B of transaction per reading, ≈ 3× the signed bytes
    batch_max_readings: int = Field(default=8000, ge=1)
    batch_max_bytes: int = Field(default=1_500_000, ge=1)  # signed message bytes per transaction
    batch_max_wait_ms: int | None = None  # deprecated (DEPRECATED): accepted, read by nothing, warns once
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
    # the delivery engine (outbox polling, retries, breaker, reconciliation)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    # alert and lifecycle webhooks (egress rules, timeout); legacy flat keys webhook_allow_private/_http
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    # HTTPS for `ledgerhub serve`; legacy flat keys tls_cert/tls_key (LEDGERHUB_TLS_CERT/_KEY)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    # party master data by org (name, VAT id, address, ERP ids), see connectors.base.Party
    parties: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # embedded ledger: how far (seconds) a transaction proposal's timestamp may be from the endorsing
    # peers' clock before the contract refuses it (`tx_timestamp_skew`, ADR 0027); 0 turns the check off
    ledger_max_clock_skew_seconds: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    # embedded ledger block cutting: a block is cut at this many transactions or after this wait
    ledger_block_max_txs: int = Field(default=500, ge=1)
    ledger_block_timeout_ms: int = Field(default=5, ge=0)
    # fabric
    fabric_gateway: str | None = None
    fabric_tls_root: Path | None = None
    # the channel this hub serves (ADR 0068: one hub per (org, channel)); unset: network.json's default
    # `channel`, or `billing` with a single gateway address. `ledgerhub serve --channel C` sets it
    fabric_channel: str | None = None
    fabric_chaincode: str = "billing"
    fabric_network_dir: Path | None = None
    # plaintext gRPC to the gateway: only when said explicitly (a local test peer), never as a fallback
    fabric_insecure: bool = False
    fabric_timeouts: FabricTimeouts = Field(default_factory=FabricTimeouts)

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        legacy = _LegacyEnvSource(settings_cls)
        return init_settings, env_settings, legacy, dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _fold_legacy_keys(cls, values: Any) -> Any:
        return fold_legacy(values) if isinstance(values, dict) else values

    @model_validator(mode="after")
    def _warn_deprecated(self) -> Settings:
        for name in deprecated_in(self):
            if name not in _warned:
                _warned.add(name)
                log.warning("setting %s is deprecated and ignored: %s", name, DEPRECATED[name])
        return self

    @field_validator("connectors", mode="after")
    @classmethod
    def _hide_connector_secrets(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return _hide(value)

    @field_validator("org", mode="after")
    @classmethod
    def _org_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an MSP id, or unset for the all-orgs hub")
        return value

    def acts_for(self, org: str) -> bool:
        """May this hub act for (and serve users of) `org`? Always, for the all-orgs hub."""
        return self.org is None or org == self.org

    @property
    def webhook_allow_private(self) -> bool:
        """Legacy name of `webhooks.allow_private`."""
        return self.webhooks.allow_private

    @property
    def webhook_allow_http(self) -> bool:
        """Legacy name of `webhooks.allow_http`."""
        return self.webhooks.allow_http

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
        return type(self)(**merge_sources(self.model_dump(), fold_legacy(values)))

    def pin(self) -> str | None:
        """The HSM PIN from LEDGERHUB_PKCS11_PIN or the file LEDGERHUB_PKCS11_PIN_FILE names."""
        if self.pkcs11_pin is not None:
            return self.pkcs11_pin.get_secret_value()
        if self.pkcs11_pin_file is not None:
            return self.pkcs11_pin_file.read_text().strip()
        return None


def deprecated_in(settings: Settings) -> list[str]:
    """The deprecated settings (`DEPRECATED`) these settings set."""
    return ["batch_max_wait_ms"] if settings.batch_max_wait_ms is not None else []


def load_settings(**overrides: Any) -> Settings:
    """The settings file named by LEDGERHUB_CONFIG, the environment over it, explicit overrides over both
    (sections merge key by key). A file that is not a JSON object, or holds an unknown key or a wrong
    value, raises `SettingsError` naming the file; the environment's errors name the variable's key."""
    file_values: dict[str, Any] = {}
    config_path = os.environ.get("LEDGERHUB_CONFIG")
    if config_path:
        file_values = _read_file(Path(config_path))
    try:
        env_values = Settings().model_dump(exclude_unset=True)
        return Settings(**merge_sources(merge_sources(file_values, env_values), fold_legacy(overrides)))
    except SourceError as exc:  # a LEDGERHUB_* variable that should hold JSON does not
        raise SettingsError(f"settings (LEDGERHUB_* environment): {exc}") from None
    except ValidationError as exc:
        raise SettingsError(f"settings (LEDGERHUB_* environment, overrides): {_problems(exc)}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"settings file {path} (LEDGERHUB_CONFIG): {exc}") from exc
    if not isinstance(values, dict):
        raise SettingsError(f"settings file {path} (LEDGERHUB_CONFIG): a JSON object expected")
    values = fold_legacy(values)
    try:
        Settings.model_validate(values)  # the file alone (no environment): its own errors, named as its own
    except ValidationError as exc:
        raise SettingsError(f"settings file {path} (LEDGERHUB_CONFIG): {_problems(exc)}") from None
    return values


def _problems(exc: ValidationError) -> str:
    """`key.path: message` per problem. Neither the input nor a token (the key of `tokens`) is shown: they
    may be secrets (which is also why the ValidationError is not chained)."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc[:1] == ["tokens"] and len(loc) > 1:
            loc[1] = "<token>"
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{'.'.join(loc) or '(top level)'}: {message}")
    return "; ".join(lines)
