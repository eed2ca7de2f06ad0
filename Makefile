# The same commands for everyone: make up, make test, make check, make bench, make fmt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up test check bench fmt clean chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Bazaar needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start the whole platform on this machine (embedded PostgreSQL and broker); Ctrl-C stops it.
up: $(STAMP)
	$(BIN)/bazaar up $(ARGS)

## The whole test suite (unit, integration, end-to-end) against real PostgreSQL and a real broker.
## Unit and integration tests mostly wait on PostgreSQL and the broker, so they run in
## TEST_WORKERS processes; the end-to-end tests then run alone (their stacks hold many
## database connections). PYTEST_ARGS="..." runs one plain pytest with those arguments.
TEST_WORKERS ?= 3
test: $(STAMP) chromium
ifdef PYTEST_ARGS
	$(BIN)/python -m pytest $(PYTEST_ARGS)
else
	$(BIN)/python -m pytest -n $(TEST_WORKERS) tests/unit tests/integration
	$(BIN)/python -m pytest tests/e2e
endif

## Format, lint, types and architecture contracts, as CI runs them.
check: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## Benchmarks: figures printed with the machine and the command; see docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

## Debian's Chromium for the portal's browser tests (installed with apt-get only when missing).
chromium:
	@scripts/ensure-chromium

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
