"""`ledgerhub bank import` and `ledgerhub audit export` act as the hub's own org on a hub of one org
(ADR 0065): such a hub holds no other identity, so the old defaults (provider, auditor) were refused
`wrong_hub_org` there. The all-orgs hub keeps its defaults."""

from __future__ import annotations

import pytest

from hub.audit.cli import bundle_org
from hub.bank.cli import statement_org
from hub.config import Settings

pytestmark = pytest.mark.unit


def test_the_all_orgs_hub_keeps_the_provider_and_auditor_defaults() -> None:
    settings = Settings(provider_org="P", customer_org="C", auditor_org="A")
    assert (statement_org(settings), bundle_org(settings)) == ("P", "A")


@pytest.mark.parametrize("org", ["P", "C", "A"])
def test_a_hub_of_one_org_acts_as_its_own_org(org: str) -> None:
    settings = Settings(provider_org="P", customer_org="C", auditor_org="A", org=org)
    assert (statement_org(settings), bundle_org(settings)) == (org, org)
