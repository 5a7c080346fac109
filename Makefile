PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
PORT ?= 3000
# Azurite (Azure Storage emulator) for the Azure tests, pinned like .ci/run (test_github.py checks it)
AZURITE := azurite@3.35.0
AZURITE_BLOB := .tools/node_modules/.bin/azurite-blob

.PHONY: install install-dev run check test ui lint clean

# Runtime dependencies only (what `make run` and `make ui` need); the dev extra (pytest, Playwright,
# Celery, the Azure SDK, Tink) only for tests and lint.
$(VENV)/.installed-runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-runtime

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
