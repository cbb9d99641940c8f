"""Node process handling with real processes: detached start, certain stop, no stranger signalled."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from network import manage
from network.cli import app
from network.procs import NetworkError, NodeProcess, group_alive, recorded, start, stop, wait_until

pytestmark = pytest.mark.integration

ENV = {"PATH": os.environ["PATH"]}
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'\n"
    "subprocess.Popen([sys.executable, '-c', child])\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def test_start_records_pid_and_stop_terminates(tmp_path: Path) -> None:
    node = start("sleeper", ["sleep", "600"], ENV, tmp_path / "pids", tmp_path / "logs")
    assert node.is_alive()
    assert [n.pid for n in recorded(tmp_path / "pids")] == [node.pid]
    assert os.getpgid(node.pid) == node.pid  # own process group: `down` can stop what it spawned
    assert stop(node)
    assert not node.is_alive()


def test_stop_kills_a_node_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    node = start("stubborn", [sys.executable, "-c", STUBBORN], ENV, tmp_path / "pids", tmp_path / "logs")
    wait_until("stubborn ready", lambda: "ready" in node.log.read_text(), 30, [node])
    assert stop(node, grace=0.5)
    assert not node.is_alive()
    assert not group_alive(node.pid)


def test_stop_kills_children_left_behind_by_a_node_that_already_exited(tmp_path: Path) -> None:
    script = "sleep 600 & echo ready"  # the shell exits at once, its child stays in the node's group
    node = start("orphaner", ["sh", "-c", script], ENV, tmp_path / "pids", tmp_path / "logs")
    try:
        wait_until("orphaner ready", lambda: "ready" in node.log.read_text(), 30, [])
        wait_until("orphaner exited", lambda: not node.is_alive(), 30, [])
        assert group_alive(node.pid)  # the precondition: a child is left
        assert stop(node, grace=5)
        assert not group_alive(node.pid)
    finally:
        if group_alive(node.pid):
            os.killpg(node.pid, 9)


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    node = start("sleeper", ["sleep", "600"], ENV, tmp_path / "pids", tmp_path / "logs")
    try:
        stranger = NodeProcess("x", node.pid, "1", node.log)  # same pid, another start time
        assert not stranger.is_alive()
        assert stop(stranger)  # nothing signalled
        assert node.is_alive()
    finally:
        stop(node)


def test_wait_until_fails_fast_with_the_log_when_a_node_dies(tmp_path: Path) -> None:
    node = start("dies", ["sh", "-c", "echo boom-reason; exit 3"], ENV, tmp_path / "pids", tmp_path / "logs")
    with pytest.raises(NetworkError, match="boom-reason"):
        wait_until("never", lambda: False, 60, [node])


def test_up_without_binaries_says_why(tmp_path: Path) -> None:
    bins = tmp_path / "fabric" / "bin"
    bins.mkdir(parents=True)
    (bins.parent / "install-error.log").write_text("go install failed: 403 Forbidden")
    with pytest.raises(manage.FabricUnavailable, match="403 Forbidden") as err:
        manage.up(run_dir=tmp_path / "run", bin_dir=bins)
    assert "peer" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_down_refuses_a_directory_that_is_not_a_network(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(NetworkError, match="not a LedgerHub network"):
        manage.down(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_cli_status_and_down_without_a_network(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--run-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no network" in result.output
    result = runner.invoke(app, ["down", "--run-dir", str(tmp_path / "none")])
    assert result.exit_code == 0
    assert "nothing was running" in result.output


def test_status_and_down_on_a_run_dir_with_live_nodes(tmp_path: Path) -> None:
    """`down` stops whatever the pid files name (here stand-in processes), then removes the run dir."""
    layout = manage.make_layout(tmp_path / "run", 17050)
    layout.run_dir.mkdir()
    (layout.run_dir / manage.MARKER).write_text("test")
    nodes = [
        start(name, ["sleep", "600"], ENV, layout.pids_dir, layout.logs_dir)
        for name in ("orderer", "chaincode")
    ]
    report = manage.status(layout.run_dir)
    assert set(report) == {"orderer", "chaincode"}
    assert all(e["alive"] and e["rss_kb"] > 0 for e in report.values())

    stopped = manage.down(layout.run_dir)

    assert sorted(stopped) == ["chaincode", "orderer"]
    assert not any(n.is_alive() or group_alive(n.pid) for n in nodes)
    assert not layout.run_dir.exists()


def test_run_returns_stdout_only_so_answers_parse_despite_log_lines_on_stderr(tmp_path: Path) -> None:
    """The `peer` CLI logs to stderr and answers on stdout; `channel_height` and the lifecycle steps parse
    what `run` returns. With stdout+stderr mixed, a log line after the JSON broke every parse (the first
    `network up` on real binaries timed out on "Extra data: line 2 column 1")."""
    from network.procs import run

    script = (
        "import sys\n"
        "print('Blockchain info: {\"height\":7}')\n"
        "print('2026-12-05 INFO [channelCmd] some log line', file=sys.stderr)\n"
    )
    out = run([sys.executable, "-c", script], ENV)
    assert out == 'Blockchain info: {"height":7}\n'
    failing = "import sys\nprint('answer')\nprint('the reason', file=sys.stderr)\nsys.exit(2)\n"
    with pytest.raises(NetworkError, match="the reason"):
        run([sys.executable, "-c", failing], ENV)
