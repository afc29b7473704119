# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/hub.toml
PLUGINS := plugins/meta plugins/whatsapp plugins/facebook plugins/email
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install install-test run test lint typecheck format bench bench-soak clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PIP) install -e . $(addprefix -e ,$(PLUGINS))
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/hub serve --config $(CONFIG)

lint: install-test
	$(BIN)/ruff check hub plugins tests bench examples
	$(BIN)/ruff format --check hub plugins tests bench examples

typecheck: install-test
	$(BIN)/mypy hub plugins/meta/hub_meta plugins/whatsapp/hub_whatsapp plugins/facebook/hub_facebook plugins/email/hub_email

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

format: install-test
	$(BIN)/ruff check --fix hub plugins tests bench examples
	$(BIN)/ruff format hub plugins tests bench examples

# SQLite: every benchmark, and (scale) one and two processes on PostgreSQL; then the pipeline's
# benchmarks again on PostgreSQL. Each figure is printed beside a ceiling measured in its run.
bench: install-test
	$(BIN)/python -m bench all
	$(BIN)/python -m bench ingest latency outbound --postgres

# Memory over a 10-minute ingest soak (SQLite, then PostgreSQL).
bench-soak: install-test
	$(BIN)/python -m bench memory --soak 600
	$(BIN)/python -m bench memory --soak 600 --postgres

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
