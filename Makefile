# finsa: `make run` sets up and runs the embedded default; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= data/run
FOR    ?= 120
SPEED  ?= 1
PORT   ?= 8600

.PHONY: setup system-deps run check test test-fast bench bench-collector bench-storage reliability clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:
	./.ci/system-deps

setup: $(VENV)/.installed system-deps

run: setup
	$(BIN)/finsa run --data-dir $(DATA) --for $(FOR) --speed $(SPEED) --port $(PORT)

# The checks first (seconds): lint (rule set in pyproject [tool.ruff]), types (tools/typecheck.py:
# mypy on the installed package names), then the tests (tests/test_architecture.py checks imports).
check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python tools/typecheck.py

# Two xdist workers (CI has two cores; most test time waits on brokers, workers and chdb), a
# module per worker at a time so module fixtures are built once; tests/conftest.py puts the
# modules that start services first.
test: setup check
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed check
	$(BIN)/python -m pytest -q -m "not integration"

$(VENV)/.bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

bench: setup $(VENV)/.bench
	$(BIN)/python -m bench all

bench-collector: setup $(VENV)/.bench
	$(BIN)/python -m bench collector

# make bench-storage FLOWS=100000000: the issue-#6 run (about 20 min on 2 cores)
bench-storage: setup $(VENV)/.bench
	$(BIN)/python -m bench storage $(if $(FLOWS),--flows $(FLOWS))

reliability: setup
	$(BIN)/python -m pytest -q tests/reliability -m reliability --reliability-report

clean:
	rm -rf $(VENV) data build *.egg-info
