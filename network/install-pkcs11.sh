#!/usr/bin/env bash
# Build peer and orderer 3.1.5 with the `pkcs11` build tag and cgo: Fabric's PKCS#11 BCCSP, which
# `ledgerhub network up --hsm` needs (ADR 0036). Called by `network/install.sh --pkcs11` after the plain
# binaries are in place; runs alone too.
#
# Output: $LEDGERHUB_FABRIC_PKCS11_BIN or ~/.cache/ledgerhub/fabric-3.1.5-pkcs11/bin, a directory of its own
# (the plain CGO_ENABLED=0 binaries are never touched) with its own stamp, which names the source tarball's
# sha256 when built from it. Routes as in install.sh: the vendored source tarball ($LEDGERHUB_FABRIC_SRC,
# default ../shared/fabric/fabric-3.1.5-src.tar.xz; extracted once, shared with the plain build), else
# `go install -tags pkcs11` by commit. Needs a C compiler (cgo). Idempotent: a warm run takes milliseconds.
# Failure handling as in install.sh: fatal where the source is present or LEDGERHUB_FABRIC_REQUIRED=1,
# else the reason goes to <bin>/../install-error.log and the HSM network tier skips, saying why.
set -euo pipefail

FABRIC_VERSION="3.1.5"
FABRIC_COMMIT="86c1172bec37e6590c6b1ae6f847833df48d65fc"
PLAIN_BIN_DIR="${LEDGERHUB_FABRIC_BIN:-${HOME}/.cache/ledgerhub/fabric-${FABRIC_VERSION}/bin}"
BIN_DIR="${LEDGERHUB_FABRIC_PKCS11_BIN:-${HOME}/.cache/ledgerhub/fabric-${FABRIC_VERSION}-pkcs11/bin}"
TOOLS=(peer orderer)
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC_TARBALL="${LEDGERHUB_FABRIC_SRC:-${REPO_DIR}/../shared/fabric/fabric-${FABRIC_VERSION}-src.tar.xz}"
SRC_SHA=""
if [ -f "${SRC_TARBALL}" ]; then
    SRC_SHA="$(sha256sum "${SRC_TARBALL}" | cut -c1-64)"
    : "${LEDGERHUB_FABRIC_REQUIRED:=1}"
fi
ERR_LOG="$(dirname "${BIN_DIR}")/install-error.log"
mkdir -p "${BIN_DIR}"

fail() {
    printf '%s\n' "$1" > "${ERR_LOG}"
    echo "!!! network/install-pkcs11.sh: $1" >&2
    if [ "${LEDGERHUB_FABRIC_REQUIRED:-0}" = "1" ]; then exit 1; fi
    echo "!!! the HSM-backed Fabric tests will be skipped (set LEDGERHUB_FABRIC_REQUIRED=1 to make this fatal)" >&2
    exit 0
}

STAMP="${BIN_DIR}/.ledgerhub-stamp"
WANT_STAMP="fabric ${FABRIC_VERSION} ${FABRIC_COMMIT} tags pkcs11 cgo"
[ -n "${SRC_SHA}" ] && WANT_STAMP="${WANT_STAMP} source ${SRC_SHA}"
have="$(cat "${STAMP}" 2>/dev/null || true)"
stamp_ok=0
if [ -n "${SRC_SHA}" ]; then
    [ "${have}" = "${WANT_STAMP}" ] && stamp_ok=1
else
    [ "${have%% source *}" = "${WANT_STAMP}" ] && stamp_ok=1
fi
if [ "${stamp_ok}" = "1" ] && [ -x "${BIN_DIR}/peer" ] && [ -x "${BIN_DIR}/orderer" ]; then
    for t in configtxgen cryptogen osnadmin; do
        [ -e "${BIN_DIR}/${t}" ] || { [ -x "${PLAIN_BIN_DIR}/${t}" ] && ln -sfn "${PLAIN_BIN_DIR}/${t}" "${BIN_DIR}/${t}"; }
    done
    echo "fabric ${FABRIC_VERSION} (pkcs11): binaries present in ${BIN_DIR}"
    exit 0
fi

command -v go >/dev/null 2>&1 || fail "Go is not installed; cannot build Fabric ${FABRIC_VERSION} with pkcs11"
command -v "${CC:-gcc}" >/dev/null 2>&1 || fail "no C compiler (${CC:-gcc}): the pkcs11 build needs cgo"
rm -f "${STAMP}"
LDFLAGS="-X github.com/hyperledger/fabric/common/metadata.Version=${FABRIC_VERSION}"
out="$(mktemp)"
trap 'rm -f "${out}"' EXIT

if [ -n "${SRC_SHA}" ]; then
    # the same extraction the plain build uses (install.sh), made here if it is not there yet
    SRC_DIR="$(dirname "${PLAIN_BIN_DIR}")/src-${SRC_SHA:0:16}"
    if [ ! -f "${SRC_DIR}/.extracted" ]; then
        rm -rf "${SRC_DIR}" && mkdir -p "${SRC_DIR}"
        tar -xJf "${SRC_TARBALL}" -C "${SRC_DIR}" || fail "cannot extract ${SRC_TARBALL}"
        touch "${SRC_DIR}/.extracted"
    fi
    tree="$(find "${SRC_DIR}" -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | head -1)"
    [ -n "${tree}" ] || fail "no go.mod inside ${SRC_TARBALL}"
    echo "fabric ${FABRIC_VERSION}: building peer, orderer with -tags pkcs11 (cgo) into ${BIN_DIR}"
    if ! (cd "${tree}" && GOFLAGS=-mod=vendor CGO_ENABLED=1 go build -tags pkcs11 -trimpath \
            -ldflags "${LDFLAGS}" -o "${BIN_DIR}/" ./cmd/peer ./cmd/orderer) >"${out}" 2>&1; then
        cat "${out}" >&2
        fail "go build -tags pkcs11 of ${SRC_TARBALL} failed: $(grep -v '^#' "${out}" | head -3 | tr -s '\n\t' '  ' | cut -c1-500)"
    fi
else
    echo "fabric ${FABRIC_VERSION}: go install -tags pkcs11 peer, orderer into ${BIN_DIR}"
    if ! CGO_ENABLED=1 GOBIN="${BIN_DIR}" GOFLAGS="${GOFLAGS:-} -trimpath" go install -tags pkcs11 \
            -ldflags "${LDFLAGS}" "github.com/hyperledger/fabric/cmd/peer@${FABRIC_COMMIT}" \
            "github.com/hyperledger/fabric/cmd/orderer@${FABRIC_COMMIT}" >"${out}" 2>&1; then
        cat "${out}" >&2
        fail "go install -tags pkcs11 of fabric@${FABRIC_COMMIT} failed: $(grep -E 'go: |error|server response' "${out}" | head -2 | tr -s '\n\t' '  ' | cut -c1-500)"
    fi
fi
for t in "${TOOLS[@]}"; do
    "${BIN_DIR}/${t}" version 2>/dev/null | grep -q "Version: ${FABRIC_VERSION}" \
        || fail "${t} (pkcs11) did not build or does not report version ${FABRIC_VERSION}"
done
# the admin tools come from the plain build: links make this directory a complete bin dir for --hsm
for t in configtxgen cryptogen osnadmin; do
    [ -x "${PLAIN_BIN_DIR}/${t}" ] && ln -sfn "${PLAIN_BIN_DIR}/${t}" "${BIN_DIR}/${t}"
done
printf '%s\n' "${WANT_STAMP}" > "${STAMP}"
rm -f "${ERR_LOG}"
echo "fabric ${FABRIC_VERSION} (pkcs11): ready in ${BIN_DIR} (built with cgo)"
