"""Modules that always ship are imported plainly: a broken import fails loudly instead of silently dropping a
part (the delivery demo step, an area's tables, a CLI sub-command, an ERP emulator). Each test breaks one
import by putting None into sys.modules (Python then raises ImportError on `import`) and shows the caller
raises."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from hub.config import Settings


def test_a_broken_area_model_module_fails_the_schema_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.store.session import import_models

    assert "hub.bank.models" in import_models()
    monkeypatch.setitem(sys.modules, "hub.bank.models", None)
    with pytest.raises(ImportError, match=r"hub\.bank\.models"):
        import_models()


def test_create_app_raises_when_an_area_model_module_is_broken(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """The migrations' env imports every area's models; before, a missing one was skipped and the app came up
    without noticing."""
    from hub.api.app import create_app

    monkeypatch.setitem(sys.modules, "hub.delivery.models", None)
    settings = Settings(data_dir=tmp_path, scheduler_enabled=False)
    with pytest.raises(ImportError, match=r"hub\.delivery\.models"):
        create_app(settings, object(), background=False)  # fails in the migration step, before the ledger


def test_the_demo_does_not_start_without_its_delivery_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.demo

    assert hub.demo.extra_steps()[-1] is hub.demo.delivery_step
    monkeypatch.setitem(sys.modules, "hub.delivery.demo", None)
    monkeypatch.delitem(sys.modules, "hub.demo")  # restored afterwards
    with pytest.raises(ImportError, match=r"hub\.delivery\.demo"):
        importlib.import_module("hub.demo")


def test_the_cli_does_not_start_without_a_sub_command_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.cli

    names = {group.name for group in hub.cli.app.registered_groups}
    assert names == {"network", "keys", "audit", "emulators", "bench", "bank"}
    monkeypatch.setitem(sys.modules, "hub.bank.cli", None)
    with pytest.raises(ImportError, match=r"hub\.bank\.cli"):
        hub.cli._mount_sub_apps()
    assert len(hub.cli.app.registered_groups) == len(names)  # nothing half-mounted


def test_the_emulators_cli_knows_every_emulator_class() -> None:
    from connectors.emulators.cli import EMULATORS
    from connectors.emulators.oracle_rest import OracleRestEmulator
    from connectors.emulators.sap_odata import SapODataEmulator
    from connectors.emulators.sap_soap import SapSoapEmulator

    assert {"sap-soap": SapSoapEmulator, "sap-odata": SapODataEmulator,
                         "oracle-rest": OracleRestEmulator} == EMULATORS


def test_no_optional_import_scaffolding_on_production_paths() -> None:
    root = Path(__file__).resolve().parents[2]
    for relative in ("hub/demo.py", "hub/store/session.py", "hub/cli.py", "connectors/emulators/cli.py"):
        source = (root / relative).read_text()
        assert "except ImportError" not in source and "ModuleNotFoundError" not in source, relative
        assert "importlib" not in source and "find_spec" not in source, relative
