#!/usr/bin/env bash
# Debian packages the test tiers need. Installs only what is missing, so a warm machine pays nothing.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# gcc + libc6-dev: cgo for the pkcs11-tagged peer/orderer (network/install-pkcs11.sh, ADR 0036)
for pkg in softhsm2 opensc postgresql chromium chromium-driver poppler-utils libxmlsec1-dev gcc libc6-dev; do
  have "$pkg" || need+=("$pkg")
done
command -v npm >/dev/null || need+=(npm)  # the portal's browser assets (hub/portal/assets, ADR 0044)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system packages: done"
