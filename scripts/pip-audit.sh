#!/usr/bin/env bash
# Audit the installed Python dependencies for known vulnerabilities (pip-audit, PyPI's advisory data).
#
# - Fails (exit 1) on a vulnerability that is not listed as a known finding in docs/security/pip-audit.md
#   (lines "- `VULN-ID` package: reason"), so a new advisory stops CI and a reviewed one does not.
# - Needs no network beyond PyPI. When PyPI's vulnerability data cannot be reached (offline mirror, no
#   DNS), pip-audit reports every package as "could not be audited" and "No known vulnerabilities found";
#   this script does not trust that: it says so LOUDLY and exits 0, because "not audited" is not "clean".
# Usage: scripts/pip-audit.sh [extra pip-audit args]      (VENV=.venv by default)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
KNOWN="$ROOT/docs/security/pip-audit.md"
OUT="$(mktemp)"
ERR="$(mktemp)"
trap 'rm -f "$OUT" "$ERR"' EXIT

if [ ! -x "$VENV/bin/pip-audit" ]; then
    echo "!!! pip-audit is not installed in $VENV: dependency audit NOT RUN" >&2
    exit 0
fi

ignores=()
while read -r id; do
    [ -n "$id" ] && ignores+=(--ignore-vuln "$id")
done < <(grep -oE '^- `[A-Za-z0-9-]+`' "$KNOWN" 2>/dev/null | sed -e 's/^- //' -e 's/`//g')

"$VENV/bin/pip-audit" --local --skip-editable --progress-spinner off --desc off --format json \
    --output "$OUT" "${ignores[@]}" "$@" 2>"$ERR"
status=$?

"$VENV/bin/python" - "$OUT" "$ERR" "$status" <<'PY'
import json
import sys

out, err, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    report = json.load(open(out))
except (OSError, ValueError):
    print("!!! pip-audit produced no report (network?): dependency audit NOT RUN", file=sys.stderr)
    print(open(err).read()[-1500:], file=sys.stderr)
    sys.exit(0)
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
audited = [d for d in deps if not d.get("skip_reason")]
vulnerable = [d for d in audited if d.get("vulns")]
if deps and not audited:
    print("!" * 78, file=sys.stderr)
    print(f"!!! pip-audit could not reach PyPI's vulnerability data: 0 of {len(deps)} packages audited.",
          file=sys.stderr)
    print(f"!!! ({skipped[0]['skip_reason']})", file=sys.stderr)
    print("!!! Dependency audit NOT RUN on this machine. Run scripts/pip-audit.sh where PyPI is reachable.",
          file=sys.stderr)
    print("!" * 78, file=sys.stderr)
    sys.exit(0)
for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
        print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
print(f"pip-audit: {len(audited)} packages audited, {len(skipped)} skipped, "
      f"{sum(len(d['vulns']) for d in vulnerable)} unlisted vulnerabilities")
if skipped:
    print("skipped: " + ", ".join(d["name"] for d in skipped[:20]) + (" ..." if len(skipped) > 20 else ""))
sys.exit(1 if vulnerable else 0)
PY
