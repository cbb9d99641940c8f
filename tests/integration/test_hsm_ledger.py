"""The hub on the embedded ledger with its org keys on a SoftHSM2 token (LEDGERHUB_SIGNER=pkcs11): the
whole API story runs, every endorsement on the ledger was made by an HSM-held endorser key, every one of those
signatures is in the key audit log, and the ledger and the log both verify."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.keys import build_key_manager
from hub.keys.audit_log import read_log, verify_log
from hub.keys.signer import ski
from hub.ledger.verify import verify_ledger
from tests.helpers.api import TOKENS, auth, last_month, post_usage, setup_contract, ts, usage
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, reading

pytestmark = [pytest.mark.integration, pytest.mark.hsm]


def test_api_story_is_endorsed_by_hsm_keys(pkcs11_settings, tmp_path: Path) -> None:
    from hub.config import TokenGrant

    settings = pkcs11_settings.updated(
        **{"tokens": {t: TokenGrant(**g) for t, g in TOKENS.items()}, "scheduler_enabled": False}
    )
    key = make_device_key("hsm")
    period, _ = last_month()
    with TestClient(create_app(settings)) as client:
        setup_contract(client, key)
        r = post_usage(
            client,
            usage(
                key,
                "m1",
                [
                    reading("r1", "scan", "3", ts(period, 3)),
                    reading("r2", "magnet_hours", "1.5", ts(period, 3, 11)),
                ],
            ),
        )
        assert r.status_code == 202, r.text
        r = client.post(f"/v1/contracts/ctr-mri-001/periods/{period}/close", headers=auth("tok-operator"))
        assert r.status_code in (200, 201), r.text
        ledger = client.app.state.services.ledger

        manager = build_key_manager(settings)
        endorser_ids = {manager.version_info(f"endorser-{org}").key_id: org for org in (PROVIDER, CUSTOMER)}
        endorsed = Counter()
        for number in range(ledger.height()):
            for tx_id in ledger.block(number).tx_ids:
                for e in ledger.tx(tx_id).endorsements:
                    cert = x509.load_pem_x509_certificate(e.certificate)
                    assert endorser_ids.get(ski(cert.public_key())) == e.msp_id, (tx_id, e.msp_id)
                    endorsed[e.msp_id] += 1
        # the contract acceptance and the invoice needed both orgs: both HSM keys signed
        assert endorsed[PROVIDER] > 0 and endorsed[CUSTOMER] > 0
        report = verify_ledger(ledger)
        assert report.ok, report.summary()

    manager.audit.flush()
    log_path = settings.data_dir / "keys" / "audit.jsonl"
    assert verify_log(log_path)
    uses = Counter(e["key"] for e in read_log(log_path) if e["op"] == "embedded-endorsement")
    # every endorsement on the ledger is in the log (simulations that did not commit may add more)
    assert uses[f"endorser-{PROVIDER}"] >= endorsed[PROVIDER]
    assert uses[f"endorser-{CUSTOMER}"] >= endorsed[CUSTOMER]
