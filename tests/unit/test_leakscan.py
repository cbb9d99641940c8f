"""The suite-wide secret scan (tests/helpers/leakscan.py) finds what it is meant to find: if it could not,
the run's "none found" would mean nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import leakscan


def test_finds_the_secret_in_log_files_and_names_the_line(tmp_path: Path) -> None:
    secret = "t-0123456789abcdef"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hub.log").write_text("starting\nlogin with t-0123456789abcdef failed\nbye\n")
    (tmp_path / "clean.out").write_text("nothing to see\n")
    hits = leakscan.scan_files(leakscan.log_like_files(tmp_path), [secret])
    assert hits == [(tmp_path / "sub" / "hub.log", 2)]


def test_pin_files_are_holders_not_leaks(tmp_path: Path) -> None:
    (tmp_path / "pkcs11-pin.txt").write_text("t-0123456789abcdef\n")
    (tmp_path / "run.log").write_text("ok\n")
    assert leakscan.log_like_files(tmp_path) == [tmp_path / "run.log"]


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        leakscan.remember("1234")


def test_text_lines() -> None:
    assert leakscan.find_in_text("a\nxx-secret-xx\nb\nmy-secret-too", ["-secret-"]) == [2, 4]
