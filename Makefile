# The two commands a newcomer needs: `make demo` and `make test`.
# Everything they need is installed by them: a virtualenv in .venv, Debian packages
# (SoftHSM2, PostgreSQL, Chromium), and the Fabric binaries built with `go install` (cached under ~/.cache).

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: venv system-deps fabric-bin test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

system-deps:
	scripts/install-system-deps.sh

# Fabric peer/orderer/tools from source, pinned by commit; skipped (loudly) when Go is missing.
fabric-bin:
	@if command -v go >/dev/null 2>&1 && [ -x network/install.sh ]; then network/install.sh; \
	else echo "!!! Go or network/install.sh missing: the Fabric tier will be skipped"; fi

lint: venv
	$(VENV)/bin/ruff check .

test: venv system-deps fabric-bin lint
	VENV=$(VENV) scripts/pip-audit.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/run-tests.sh $(PYTEST_ARGS)

# The fast tiers only: no Fabric network, no browser.
test-fast: venv
	$(PY) -m pytest -m "not fabric and not e2e and not slow" -q $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/ledgerhub demo

bench: venv system-deps fabric-bin
	$(VENV)/bin/ledgerhub bench

clean:
	rm -rf $(VENV) .ledgerhub .pytest_cache .ruff_cache test-artifacts
