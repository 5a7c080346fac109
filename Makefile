PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
PORT ?= 3000

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

install-dev: $(VENV)/.installed-dev

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
	cd $(DAGSTER_HOME) && SALES_PLATFORM_DATA_DIR=$${SALES_PLATFORM_DATA_DIR:-$(CURDIR)/data} \
	  $(abspath $(BIN))/dagster dev -w $(CURDIR)/workspace.yaml -p $(PORT)

lint: install-dev
	$(BIN)/ruff check sales_platform sales_platform_tests

clean:
	rm -rf $(VENV) data/incoming data/archive data/quarantine data/staging data/warehouse.db* \
	  data/dagster_home data/catalogue data/blob
