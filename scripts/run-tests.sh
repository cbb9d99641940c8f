#!/usr/bin/env bash
# Runs the whole suite. A PostgreSQL server is started for the run (see tests/helpers/postgres.py),
# so the database tests run on SQLite and on PostgreSQL.
#
# With no arguments the Fabric tier (`-m fabric`) runs in a second pytest process beside the rest: most of its
# time is spent waiting on the network's processes (block cutting, commit events, a keepalive test that idles
# for minutes by design), so on a two-core machine the two halves overlap instead of queueing (ADR 0045).
# The rest streams to the terminal; the Fabric tier's output goes to test-artifacts/fabric-tier.log and is
# printed when it ends. LEDGERHUB_SERIAL_TESTS=1, or any pytest argument, runs one process as before.
set -uo pipefail
mkdir -p test-artifacts

if [[ $# -gt 0 || "${LEDGERHUB_SERIAL_TESTS:-}" == "1" ]]; then
  python -m pytest -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
  # pytest exits 5 when nothing was collected: that is a failure for CI, not a pass.
  exit $?
fi

start=$(date +%s)
LEDGERHUB_SUITE_LOG=suite-output-fabric.log \
  python -m pytest -p no:cacheprovider -m fabric --junitxml=test-artifacts/junit-fabric.xml \
  >test-artifacts/fabric-tier.log 2>&1 &
fabric_pid=$!
# Stop the Fabric tier (and the network it started) if this script is interrupted.
trap 'kill -INT "$fabric_pid" 2>/dev/null; wait "$fabric_pid" 2>/dev/null; exit 130' INT TERM

echo "== Fabric tier running in the background (pid $fabric_pid), output in test-artifacts/fabric-tier.log"
python -m pytest -p no:cacheprovider -m "not fabric" --junitxml=test-artifacts/junit.xml
rest_rc=$?
echo "== the rest ended (exit $rest_rc) after $(( $(date +%s) - start )) s; waiting for the Fabric tier"
wait "$fabric_pid"
fabric_rc=$?
trap - INT TERM
echo "== Fabric tier (exit $fabric_rc) after $(( $(date +%s) - start )) s:"
cat test-artifacts/fabric-tier.log
if [[ $rest_rc -ne 0 || $fabric_rc -ne 0 ]]; then
  echo "== FAILED: the rest exited $rest_rc, the Fabric tier exited $fabric_rc"
  exit 1
fi
echo "== both halves passed in $(( $(date +%s) - start )) s"
