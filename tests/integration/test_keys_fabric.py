"""The hub's HSM client identities on a real Fabric network: the MSP accepts the certificate the org's
cryptogen CA issued for the token key, and transactions signed on the token commit VALID.

Needs the Fabric binaries (`network/install.sh`); skips with the reason otherwise
(LEDGERHUB_FABRIC_REQUIRED=1 turns the skip into a failure).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from hub.config import Settings
from hub.keys import build_key_manager, build_signers
from hub.keys.audit_log import read_log
from hub.keys.certs import node_ou_of
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.hsm]


def test_transactions_signed_on_the_token_commit_on_fabric(
    fabric_network: FabricNetwork, hsm_env, tmp_path: Path
) -> None:
    from hub.ledger.fabric import open_fabric_ledger
    from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset

    settings = Settings(
        data_dir=tmp_path / "hub", ledger="fabric", fabric_network_dir=fabric_network.network_json,
        signer="pkcs11", pkcs11_token_label=hsm_env.token_label, pkcs11_pin=hsm_env.pin,
    )
    signers = build_signers(settings)
    assert PROVIDER in signers and node_ou_of(signers[PROVIDER].certificate()) == ["client"]
    ledger = open_fabric_ledger(settings, signers)
    try:
        tag = uuid.uuid4().hex[:8]
        commit = ledger.submit(
            "RegisterAsset", [json.dumps(sample_asset(make_device_key(tag), f"hsm-{tag}"))], as_org=PROVIDER
        )
        assert commit.valid
    finally:
        ledger.close()
    manager = build_key_manager(settings)
    manager.flush()
    assert any(e["op"] == "fabric-proposal" and e["key"] == f"client-{PROVIDER}"
               for e in read_log(manager.audit.path))
