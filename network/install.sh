#!/usr/bin/env bash
# Build the Hyperledger Fabric binaries LedgerHub needs, natively, pinned by commit.
#
# Why a commit and not @v3.1.5: Fabric's module path has no /v3 suffix, so the Go toolchain refuses the
# semver tag (hyperledger/fabric#3912); a commit hash becomes a pseudo-version and works.
# Idempotent: a binary that exists and reports the pinned version is kept, so a warm run takes well under a
# second. Output directory: $LEDGERHUB_FABRIC_BIN or ~/.cache/ledgerhub/fabric-3.1.5/bin (a directory of
# prebuilt 3.1.5 binaries may be given there too).
#
# A failed build does not fail `make test` (the Fabric tier then skips, loudly, quoting the reason kept in
# <bin>/../install-error.log) unless LEDGERHUB_FABRIC_REQUIRED=1, which makes it fatal (for CI that must
# exercise Fabric).
set -euo pipefail

FABRIC_VERSION="3.1.5"
FABRIC_COMMIT="86c1172bec37e6590c6b1ae6f847833df48d65fc"
BIN_DIR="${LEDGERHUB_FABRIC_BIN:-${HOME}/.cache/ledgerhub/fabric-${FABRIC_VERSION}/bin}"
TOOLS=(peer orderer configtxgen cryptogen osnadmin)

ERR_LOG="$(dirname "${BIN_DIR}")/install-error.log"
mkdir -p "${BIN_DIR}"

fail() {
    # Keep the reason where the test fixture can quote it when it skips.
    printf '%s\n' "$1" > "${ERR_LOG}"
    echo "!!! network/install.sh: $1" >&2
    if [ "${LEDGERHUB_FABRIC_REQUIRED:-0}" = "1" ]; then exit 1; fi
    echo "!!! the Fabric test tier will be skipped (set LEDGERHUB_FABRIC_REQUIRED=1 to make this fatal)" >&2
    exit 0
}

STAMP="${BIN_DIR}/.ledgerhub-stamp"
WANT_STAMP="fabric ${FABRIC_VERSION} ${FABRIC_COMMIT}"

# How each tool states its version (osnadmin has no version output: presence and --help must do).
version_ok() {
    case "$1" in
        configtxgen) "${BIN_DIR}/configtxgen" -version 2>/dev/null | grep -q "Version: ${FABRIC_VERSION}" ;;
        osnadmin) "${BIN_DIR}/osnadmin" --help >/dev/null 2>&1 ;;
        *) "${BIN_DIR}/$1" version 2>/dev/null | grep -q "Version: ${FABRIC_VERSION}" ;;
    esac
}

missing=()
for t in "${TOOLS[@]}"; do
    # a stamp from our own successful build plus an executable file is enough (fast path); otherwise the
    # binary must report the pinned version (a stale or foreign build is rebuilt)
    if [ -x "${BIN_DIR}/${t}" ] && { [ "$(cat "${STAMP}" 2>/dev/null)" = "${WANT_STAMP}" ] || version_ok "${t}"; }; then
        continue
    fi
    missing+=("${t}")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "fabric ${FABRIC_VERSION}: binaries present in ${BIN_DIR}"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    fail "Go is not installed; cannot build Fabric ${FABRIC_VERSION}"
fi
rm -f "${STAMP}"
echo "fabric ${FABRIC_VERSION}: building ${missing[*]} into ${BIN_DIR} (first time takes a few minutes)"
pkgs=()
for t in "${missing[@]}"; do
    pkgs+=("github.com/hyperledger/fabric/cmd/${t}@${FABRIC_COMMIT}")
done
# One go install for all packages: they share one module download and one build graph.
out="$(mktemp)"
if ! CGO_ENABLED=0 GOBIN="${BIN_DIR}" GOFLAGS="${GOFLAGS:-} -trimpath" go install \
        -ldflags "-X github.com/hyperledger/fabric/common/metadata.Version=${FABRIC_VERSION}" \
        "${pkgs[@]}" >"${out}" 2>&1; then
    cat "${out}" >&2
    reason="go install of fabric@${FABRIC_COMMIT} failed: $(grep -E 'go: |error|server response' "${out}" | head -2 | tr -s '\n\t' '  ' | cut -c1-500)"
    rm -f "${out}"
    fail "${reason}"
fi
cat "${out}"; rm -f "${out}"

for t in "${TOOLS[@]}"; do
    version_ok "${t}" || fail "${t} did not build or does not report version ${FABRIC_VERSION}"
done
printf '%s\n' "${WANT_STAMP}" > "${STAMP}"
rm -f "${ERR_LOG}"
echo "fabric ${FABRIC_VERSION}: ready in ${BIN_DIR}"
