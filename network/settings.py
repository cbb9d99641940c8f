"""The dev network tooling's own settings: the `LEDGERHUB_*` variables `network/` reads, in one typed model.

`network/` is its own role and does not import the hub (whose settings are `hub/config.py`); the two share
only the prefix and `LEDGERHUB_DATA_DIR`. Read on each call (`network_settings()`): the values are a few
environment look-ups, and a shell or a test may change them between two networks. An empty variable counts
as unset, as it did when each module read its own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT_BASE = 17050
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
HSM_ON = ("1", "true", "yes")


class NetworkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERHUB_", extra="forbid", env_ignore_empty=True)

    # Fabric binaries (network/install.sh puts them in ~/.cache/ledgerhub/fabric-<version>/bin)
    fabric_bin: Path | None = None
    # the pkcs11-tagged peer/orderer (network/install.sh --pkcs11; ~/.cache/.../fabric-<version>-pkcs11/bin)
    fabric_pkcs11_bin: Path | None = None
    # state dir of the network; else $LEDGERHUB_DATA_DIR/fabric, else network/.run
    fabric_run_dir: Path | None = None
    data_dir: Path | None = None
    # first of the network's ports (peers, orderer, operations); two networks need two bases
    fabric_port_base: int = Field(default=DEFAULT_PORT_BASE)
    # "1"/"true"/"yes": `up()` and the test fixture put the nodes' signing keys on SoftHSM2 (ADR 0036)
    fabric_hsm: bool = False
    fabric_pkcs11_module: str = SOFTHSM_MODULE
    # FABRIC_LOGGING_SPEC of the nodes (the PIN-printing loggers stay at WARNING with an HSM)
    fabric_log_spec: str = "info"

    @field_validator("fabric_port_base", mode="before")
    @classmethod
    def _port_base_in_range(cls, value: object) -> int:
        base = int(str(value))
        if not 1024 <= base <= 65535 - 100:
            raise ValueError(f"LEDGERHUB_FABRIC_PORT_BASE={value} is outside 1024..65435")
        return base

    @field_validator("fabric_hsm", mode="before")
    @classmethod
    def _hsm_switch(cls, value: object) -> bool:
        return value is True or str(value) in HSM_ON  # anything else is off, as before


def network_settings() -> NetworkSettings:
    """The tooling's settings from the environment, now."""
    return NetworkSettings()


__all__ = ["DEFAULT_PORT_BASE", "SOFTHSM_MODULE", "NetworkSettings", "network_settings"]
