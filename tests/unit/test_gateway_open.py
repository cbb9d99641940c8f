"""`open_ledger` with ledger=fabric: identities and gateways from network.json or a single gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hub.config import Settings
from hub.ledger import open_ledger
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from tests.unit.test_gateway_client import make_identity


def _msp_dir(tmp: Path, msp_id: str) -> Path:
    identity = make_identity(msp_id)
    msp = tmp / msp_id
    (msp / "signcerts").mkdir(parents=True)
    (msp / "keystore").mkdir()
    (msp / "signcerts" / "cert.pem").write_bytes(identity.certificate_pem)
    key = identity.signer.private_key  # type: ignore[attr-defined]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (msp / "keystore" / "priv_sk").write_bytes(pem)
    return msp


def _network(tmp: Path) -> Path:
    orgs = {}
    for key, msp_id, port in [("provider", "ProviderMSP", 7051), ("customer", "CustomerMSP", 8051)]:
        tls = tmp / f"{key}-tls.pem"
        tls.write_bytes(make_identity(msp_id).certificate_pem)
        orgs[key] = {
            "mspid": msp_id,
            "peer": {"endpoint": f"127.0.0.1:{port}", "host_name": f"peer0.{key}", "tls_root_cert": str(tls)},
            "client": {"msp_dir": str(_msp_dir(tmp, msp_id))},
        }
    (tmp / "network.json").write_text(
        json.dumps({"channel": "billing", "chaincode": {"name": "billing"}, "orgs": orgs})
    )
    return tmp


def test_from_network_json_with_cryptogen_identities(tmp_path: Path) -> None:
    settings = Settings(ledger="fabric", fabric_network_dir=_network(tmp_path))
    ledger = open_ledger(settings, {})
    assert isinstance(ledger, FabricLedger)
    assert ledger.network_id == "billing"
    assert ledger.identity("CustomerMSP").msp_id == "CustomerMSP"
    assert (
        ledger.identity("ProviderMSP").certificate_pem
        == (tmp_path / "ProviderMSP/signcerts/cert.pem").read_bytes()
    )
    ledger.close()


def test_a_signer_with_a_certificate_replaces_the_cryptogen_identity(tmp_path: Path) -> None:
    hsm_like = make_identity("ProviderMSP")
    ledger = open_fabric_ledger(
        Settings(ledger="fabric", fabric_network_dir=_network(tmp_path)), {"ProviderMSP": hsm_like.signer}
    )
    assert ledger.identity("ProviderMSP").certificate_pem == hsm_like.certificate_pem
    ledger.close()


def test_single_gateway_needs_signers_with_certificates(tmp_path: Path) -> None:
    settings = Settings(ledger="fabric", fabric_gateway="127.0.0.1:7051", fabric_insecure=True)
    with pytest.raises(ValueError, match="no org identity"):
        open_fabric_ledger(settings, {})
    ledger = open_fabric_ledger(settings, {"CustomerMSP": make_identity("CustomerMSP").signer})
    assert ledger.identity("CustomerMSP").msp_id == "CustomerMSP"
    ledger.close()


def test_fabric_without_any_address_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="FABRIC_NETWORK_DIR or LEDGERHUB_FABRIC_GATEWAY"):
        open_fabric_ledger(Settings(ledger="fabric"), {})
