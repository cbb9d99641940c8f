"""Build the Go reference programs in `tests/fabric/reference/` (fabric-gateway client, fabric-chaincode-go
shim) offline, from the module cache that `scripts/fetch-go-references.sh` fills during `make test`'s install
step. Offline on purpose: a test run must not depend on a registry answering, and a missing module then says
which install step did not run.

Without a Go toolchain or the modules the reference tests skip, except when the Fabric tier is required
(LEDGERHUB_FABRIC_REQUIRED=1, the default of `make test` wherever the Fabric source or CI is present), where
they fail: the cross-check against Fabric's own code is part of the evidence, not an extra.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.fabric_network import skip_or_fail

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "fabric" / "reference"


def build_reference(name: str, workdir: Path) -> Path:
    """Copy `reference/<name>` to `workdir`, build it with the module cache only, return the binary."""
    go = shutil.which("go")
    if go is None:
        skip_or_fail("no Go toolchain to build the reference program")
    assert go is not None
    src = workdir / name
    shutil.copytree(REFERENCE_DIR / name, src)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    env.setdefault("GOPROXY", "off")  # the module cache only, unless the caller allows a proxy
    binary = src / f"ref-{name}"
    for argv in ([go, "mod", "tidy"], [go, "build", "-o", str(binary), "."]):
        proc = subprocess.run(
            argv, cwd=src, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if proc.returncode != 0:
            skip_or_fail(
                f"cannot build the {name} reference ({' '.join(argv[1:3])}; "
                f"did scripts/fetch-go-references.sh "
                f"run?): {proc.stderr.strip()[-400:]}"
            )
    return binary
