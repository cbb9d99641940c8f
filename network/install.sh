#!/usr/bin/env bash
# Build the Hyperledger Fabric binaries LedgerHub needs, natively.
#
# Two routes, the first that applies:
# 1. A Fabric source tarball with its dependencies vendored ($LEDGERHUB_FABRIC_SRC, default
#    ../shared/fabric/fabric-3.1.5-src.tar.xz beside the repository): `go build -mod=vendor`, no download.
#    Rebuilt only when the tarball's sha256 changes (kept in the stamp). Where the source is present, the
#    Fabric tier is required: a failed build fails (LEDGERHUB_FABRIC_REQUIRED defaults to 1).
# 2. `go install` pinned by commit, for users on a machine that reaches the Go module proxy. Why a commit
#    and not @v3.1.5: Fabric's module path has no /v3 suffix, so the Go toolchain refuses the semver tag
#    (hyperledger/fabric#3912); a commit hash becomes a pseudo-version and works.
# Idempotent: stamped binaries are kept, so a warm run takes well under a second. Output directory:
# $LEDGERHUB_FABRIC_BIN or ~/.cache/ledgerhub/fabric-3.1.5/bin (a directory of prebuilt 3.1.5 binaries may
# be given there too).
#
# Without the source a failed build does not fail `make test` (the Fabric tier then skips, loudly, quoting
# the reason kept in <bin>/../install-error.log) unless LEDGERHUB_FABRIC_REQUIRED=1, which makes it fatal.
#
# `network/install.sh --pkcs11` also builds peer and orderer with the `pkcs11` build tag and cgo (Fabric's
# PKCS#11 BCCSP, for `ledgerhub network up --hsm`, ADR 0036) into their own directory,
# $LEDGERHUB_FABRIC_PKCS11_BIN or ~/.cache/ledgerhub/fabric-3.1.5-pkcs11/bin, with their own stamp; the
# plain binaries are never overwritten. The same two routes apply (source tarball, else `go install`).
set -euo pipefail

FABRIC_VERSION="3.1.5"
FABRIC_COMMIT="86c1172bec37e6590c6b1ae6f847833df48d65fc"
BIN_DIR="${LEDGERHUB_FABRIC_BIN:-${HOME}/.cache/ledgerhub/fabric-${FABRIC_VERSION}/bin}"
PKCS11_BIN_DIR="${LEDGERHUB_FABRIC_PKCS11_BIN:-${HOME}/.cache/ledgerhub/fabric-${FABRIC_VERSION}-pkcs11/bin}"
TOOLS=(peer orderer configtxgen cryptogen osnadmin)
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC_TARBALL="${LEDGERHUB_FABRIC_SRC:-${REPO_DIR}/../shared/fabric/fabric-${FABRIC_VERSION}-src.tar.xz}"
SRC_SHA=""
if [ -f "${SRC_TARBALL}" ]; then
    SRC_SHA="$(sha256sum "${SRC_TARBALL}" | cut -c1-64)"
    : "${LEDGERHUB_FABRIC_REQUIRED:=1}"
fi

WITH_PKCS11=0
for arg in "$@"; do
    case "${arg}" in
        --pkcs11) WITH_PKCS11=1 ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "network/install.sh: unknown argument ${arg} (known: --pkcs11)" >&2; exit 2 ;;
    esac
done
if [ "${WITH_PKCS11}" = "1" ]; then
    # the plain binaries first (configtxgen, cryptogen, osnadmin and the admin CLI come from there)
    "${BASH_SOURCE[0]}"
    exec "${REPO_DIR}/network/install-pkcs11.sh"
fi

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
[ -n "${SRC_SHA}" ] && WANT_STAMP="${WANT_STAMP} source ${SRC_SHA}"

stamp_ok() {
    local have
    have="$(cat "${STAMP}" 2>/dev/null || true)"
    # with the source present only a build of exactly that source counts; without it any build of the
    # pinned commit does (a stamp from an earlier source build stays valid when the tarball goes away)
    if [ -n "${SRC_SHA}" ]; then [ "${have}" = "${WANT_STAMP}" ]; else [ "${have%% source *}" = "${WANT_STAMP}" ]; fi
}

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
    if [ -x "${BIN_DIR}/${t}" ] && { stamp_ok || { [ -z "${SRC_SHA}" ] && version_ok "${t}"; }; }; then
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
LDFLAGS="-X github.com/hyperledger/fabric/common/metadata.Version=${FABRIC_VERSION}"

if [ -n "${SRC_SHA}" ]; then
    # Route 1: the vendored source. Extract once per tarball into the cache, build all five (the build
    # cache makes unchanged packages free), offline.
    SRC_DIR="$(dirname "${BIN_DIR}")/src-${SRC_SHA:0:16}"
    if [ ! -f "${SRC_DIR}/.extracted" ]; then
        rm -rf "${SRC_DIR}" && mkdir -p "${SRC_DIR}"
        tar -xJf "${SRC_TARBALL}" -C "${SRC_DIR}" || fail "cannot extract ${SRC_TARBALL}"
        touch "${SRC_DIR}/.extracted"
    fi
    tree="$(find "${SRC_DIR}" -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | head -1)"
    [ -n "${tree}" ] || fail "no go.mod inside ${SRC_TARBALL}"
    echo "fabric ${FABRIC_VERSION}: building ${TOOLS[*]} from ${SRC_TARBALL} into ${BIN_DIR} (about a minute cold)"
    out="$(mktemp)"
    if ! (cd "${tree}" && GOFLAGS=-mod=vendor CGO_ENABLED=0 go build -trimpath -ldflags "${LDFLAGS}" \
            -o "${BIN_DIR}/" ./cmd/peer ./cmd/orderer ./cmd/configtxgen ./cmd/osnadmin ./cmd/cryptogen) \
            >"${out}" 2>&1; then
        cat "${out}" >&2
        reason="go build of ${SRC_TARBALL} failed: $(grep -v '^#' "${out}" | head -3 | tr -s '\n\t' '  ' | cut -c1-500)"
        rm -f "${out}"
        fail "${reason}"
    fi
    rm -f "${out}"
    for t in "${TOOLS[@]}"; do
        version_ok "${t}" || fail "${t} did not build or does not report version ${FABRIC_VERSION}"
    done
    printf '%s\n' "${WANT_STAMP}" > "${STAMP}"
    rm -f "${ERR_LOG}"
    echo "fabric ${FABRIC_VERSION}: ready in ${BIN_DIR} (built from source)"
    exit 0
fi

# Route 2: go install by commit through the module proxy.
echo "fabric ${FABRIC_VERSION}: building ${missing[*]} into ${BIN_DIR} (first time takes a few minutes)"
pkgs=()
for t in "${missing[@]}"; do
    pkgs+=("github.com/hyperledger/fabric/cmd/${t}@${FABRIC_COMMIT}")
done
# One go install for all packages: they share one module download and one build graph.
out="$(mktemp)"
if ! CGO_ENABLED=0 GOBIN="${BIN_DIR}" GOFLAGS="${GOFLAGS:-} -trimpath" go install \
        -ldflags "${LDFLAGS}" "${pkgs[@]}" >"${out}" 2>&1; then
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
