# The two commands a newcomer needs: `make demo` and `make test`.
# Everything they need is installed by them: a virtualenv in .venv, Debian packages
# (SoftHSM2, PostgreSQL, Chromium), and the Fabric binaries (built from ../shared/fabric's vendored source when
# it is there, else with `go install` by commit; cached under ~/.cache).

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# The Fabric tier is required (a missing binary, failed build or network that does not come up fails the run)
# wherever the source is available or in CI; elsewhere it skips loudly, saying why.
FABRIC_SRC ?= $(CURDIR)/../shared/fabric/fabric-3.1.5-src.tar.xz
ifneq ($(wildcard $(FABRIC_SRC))$(filter true,$(CI)),)
export LEDGERHUB_FABRIC_REQUIRED ?= 1
endif

PORTAL_ASSETS := hub/portal/assets
PORTAL_STAMP  := $(PORTAL_ASSETS)/node_modules/.installed-$(shell sha256sum $(PORTAL_ASSETS)/package-lock.json | cut -c1-12)

.PHONY: venv system-deps portal-assets fabric-bin test test-fast lint demo demo-fabric bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# The portal's charting library and the accessibility checker, pinned in package-lock.json, from the npm
# registry, served by the hub itself (no CDN); downloads cached under ~/.cache/npm.
$(PORTAL_STAMP): $(PORTAL_ASSETS)/package-lock.json
	npm ci --prefix $(PORTAL_ASSETS) --cache $(HOME)/.cache/npm --no-audit --no-fund --loglevel=error
	touch $@

portal-assets: $(PORTAL_STAMP)

system-deps:
	scripts/install-system-deps.sh

# Fabric peer/orderer/tools (network/install.sh), the pkcs11-tagged peer/orderer for HSM-backed nodes
# (--pkcs11: own cache dir, ADR 0036) and the Go modules of the reference cross-checks.
fabric-bin:
	network/install.sh --pkcs11
	scripts/fetch-go-references.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # the hub's layers (pyproject [tool.importlinter], ADR 0062)

# make test's Fabric tier runs on HSM-backed nodes: the orderer's and peers' signing keys on SoftHSM2 tokens
# (`ledgerhub network up --hsm`, ADR 0036); LEDGERHUB_FABRIC_HSM=0 runs it on software node keys.
test: export LEDGERHUB_FABRIC_HSM ?= 1
test: venv system-deps portal-assets fabric-bin lint
	VENV=$(VENV) scripts/pip-audit.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/run-tests.sh $(PYTEST_ARGS)

# The fast tiers only: no Fabric network, no browser.
test-fast: venv portal-assets
	$(PY) -m pytest -m "not fabric and not e2e and not slow" -q $(PYTEST_ARGS)

demo: venv portal-assets
	$(VENV)/bin/ledgerhub demo

# The same story on a real Fabric network that the demo brings up and tears down.
demo-fabric: venv fabric-bin
	$(VENV)/bin/ledgerhub demo --ledger fabric

bench: venv system-deps fabric-bin
	$(VENV)/bin/ledgerhub bench

clean:
	rm -rf $(VENV) .ledgerhub .pytest_cache .ruff_cache test-artifacts $(PORTAL_ASSETS)/node_modules
