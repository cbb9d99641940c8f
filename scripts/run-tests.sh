#!/usr/bin/env bash
# Runs the whole suite. A PostgreSQL server is started for the run (see tests/helpers/postgres.py),
# so the database tests run on SQLite and on PostgreSQL.
set -uo pipefail
mkdir -p test-artifacts
python -m pytest -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
rc=$?
# pytest exits 5 when nothing was collected: that is a failure for CI, not a pass.
exit $rc
