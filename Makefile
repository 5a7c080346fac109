PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
PORT ?= 3000
# Azurite (Azure Storage emulator) for the Azure tests, pinned like .ci/run (test_github.py checks it)
AZURITE := azurite@3.35.0
AZURITE_BLOB := .tools/node_modules/.bin/azurite-blob

.PHONY: install install-dev run check test ui lint clean lock audit

# Dependencies from hashed lock files (requirements/*.lock, made by `make lock`): the exact versions
# the tests ran with, each checked against its hash; the project itself on top, without resolving.
# Runtime only for `make run` and `make ui`; the dev extra (pytest, Playwright, Celery, the Azure SDK,
# Tink) for tests and lint.
$(VENV)/.installed-runtime: pyproject.toml requirements/runtime.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/runtime.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed-runtime

# After a change of pyproject.toml's dependencies: new locks (uv, in a throwaway tool venv), the
# versions already locked kept where they still fit.
lock:
	$(PYTHON) -m venv .tools/lock-venv && .tools/lock-venv/bin/pip install --quiet --no-deps \
	  --require-hashes -r requirements/tools.lock
	for kind in runtime dev; do \
	  .tools/lock-venv/bin/uv pip compile pyproject.toml requirements/build.in \
	    $$( [ $$kind = dev ] && echo --extra dev ) -c requirements/$$kind.lock --generate-hashes \
	    --universal --python-version 3.11 --no-header --no-annotate -q -o requirements/$$kind.lock; \
	done

# Known vulnerabilities in the locked versions (pip-audit against the locks, no resolving).
audit:
	$(PYTHON) -m venv .tools/lock-venv && .tools/lock-venv/bin/pip install --quiet --no-deps \
	  --require-hashes -r requirements/tools.lock
	.tools/lock-venv/bin/python tools/audit.py requirements/dev.lock

install: $(VENV)/.installed-runtime

# The Azure tests fail without Azurite (not skip): the dev setup installs it into .tools/ as CI does.
# No npm: install Node.js, or set SALES_PLATFORM_TEST_SKIP_AZURITE=1 to skip those tests knowingly.
$(AZURITE_BLOB):
	@case "$$(echo "$$SALES_PLATFORM_TEST_SKIP_AZURITE" | tr A-Z a-z)" in 1|true|yes|on) skip=1;; *) skip=;; esac; \
	if [ -n "$$skip" ]; then \
	  echo "SALES_PLATFORM_TEST_SKIP_AZURITE is set: Azurite not installed, the Azure tests will skip"; \
	elif ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not found: the Azure tests need Azurite (npm install --prefix .tools $(AZURITE));" \
	    "install Node.js, or set SALES_PLATFORM_TEST_SKIP_AZURITE=1 to skip those tests" >&2; exit 1; \
	else \
	  npm install --prefix .tools --no-audit --no-fund $(AZURITE); \
	fi

install-dev: $(VENV)/.installed-dev $(AZURITE_BLOB)

# The main job on the embedded default (SQLite + local folders): mock data, then every asset.
run: install
	$(BIN)/sales-platform demo

# Every setting checked (database, key, blob, API reachable): one line per problem.
check: install
	$(BIN)/sales-platform check

test: install-dev
	$(BIN)/pytest

ui: install
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/
	# from DAGSTER_HOME: Dagster warns about a dagster.yaml in the current folder it does not use
	# explicit demo mode (the demo key under data/, as `make run`); SALES_PLATFORM_DEMO=0 to leave it
	cd $(DAGSTER_HOME) && umask 077 && SALES_PLATFORM_DATA_DIR=$${SALES_PLATFORM_DATA_DIR:-$(CURDIR)/data} \
	  SALES_PLATFORM_DEMO=$${SALES_PLATFORM_DEMO-1} \
	  $(abspath $(BIN))/dagster dev -w $(CURDIR)/workspace.yaml -p $(PORT)

lint: install-dev
	$(BIN)/ruff check sales_platform sales_platform_tests

clean:
	rm -rf $(VENV) data/incoming data/archive data/quarantine data/staging data/warehouse.db* \
	  data/dagster_home data/catalogue data/blob
