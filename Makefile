# The two commands of the README:
#   make demo   set up everything, then run the whole pipeline on a synthetic export (embedded PostgreSQL)
#   make test   set up everything, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the virtualenv's tools (dbt, dagster) first on PATH for every recipe: dagster-dbt looks for
# `dbt` on PATH, and a fresh machine has no other dbt
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.installed dbt/target/manifest.json

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The dbt manifest is a build product: prepared here, never parsed at import.
dbt/target/manifest.json: $(VENV)/.installed $(shell find dbt/models dbt/macros dbt/tests dbt/snapshots -type f 2>/dev/null) dbt/dbt_project.yml dbt/profiles.yml
	$(BIN)/dagster-dbt project prepare-and-package --file voice_analytics_dagster/defs/transform/project.py
	touch $@

demo: setup
	$(BIN)/voice-analytics demo

# two workers (this machine's cores), each with its own embedded server and home; a file's tests
# stay on one worker so that its module fixtures (pipeline runs) are made once
test: setup
	$(BIN)/pytest -q --durations=15 --numprocesses=2 --dist=loadfile

test-fast: setup
	$(BIN)/pytest -q tests/unit

lint: setup
	$(BIN)/ruff check voice_analytics_dagster tests

bench: setup
	$(BIN)/voice-analytics bench

clean:
	rm -rf dbt/target dbt/logs .pytest_cache
