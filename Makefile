PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install run test ui lint clean

$(BIN)/sales-platform: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/sales-platform

# The main job on the embedded default (SQLite + local folders): mock data, then every asset.
run: install
	$(BIN)/sales-platform demo

test: install
	$(BIN)/pytest

ui: install
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/ || true
	$(BIN)/dagster dev -w workspace.yaml

lint: install
	$(BIN)/ruff check sales_platform sales_platform_tests

clean:
	rm -rf $(VENV) data/incoming data/archive data/quarantine data/staging data/warehouse.db* \
	  data/dagster_home data/catalogue data/blob
