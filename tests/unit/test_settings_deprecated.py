"""A deprecated setting (`batch_max_wait_ms`: read by nothing) is still accepted from a keyword, the
environment and a settings file, and the first settings that set it log one warning per process."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import hub.config
from hub.config import DEPRECATED, Settings, deprecated_in, load_settings


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEDGERHUB_") and name.upper() != "LEDGERHUB_DATA_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setattr(hub.config, "_warned", set())  # as in a new process


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "hub.config" and r.levelno == logging.WARNING and "deprecated" in r.getMessage()]


def test_unset_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.config"):
        settings = Settings()
        load_settings()
    assert settings.batch_max_wait_ms is None and deprecated_in(settings) == []
    assert _warnings(caplog) == []


def test_a_keyword_is_accepted_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.config"):
        first = Settings(batch_max_wait_ms=50)
        second = first.updated(batch_max_messages=10)
        Settings(batch_max_wait_ms=20)
    assert first.batch_max_wait_ms == 50 and second.batch_max_wait_ms == 50
    assert deprecated_in(first) == ["batch_max_wait_ms"]
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "batch_max_wait_ms" in messages[0] and DEPRECATED["batch_max_wait_ms"] in messages[0]


def test_the_environment_and_a_file_still_load(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERHUB_BATCH_MAX_WAIT_MS", "30")
    with caplog.at_level(logging.WARNING, logger="hub.config"):
        assert load_settings().batch_max_wait_ms == 30
    assert len(_warnings(caplog)) == 1
    monkeypatch.delenv("LEDGERHUB_BATCH_MAX_WAIT_MS")
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"batch_max_wait_ms": 40}))
    monkeypatch.setenv("LEDGERHUB_CONFIG", str(path))
    assert load_settings().batch_max_wait_ms == 40
    assert len(_warnings(caplog)) == 1  # once per process, not once per settings object


def test_a_wrong_value_is_still_refused() -> None:
    with pytest.raises(ValueError, match="batch_max_wait_ms"):
        Settings(batch_max_wait_ms="soon")
