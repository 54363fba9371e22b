# paramlab: `make run` sets up and trains the demo model; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CORE := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: setup run test lint format bench clean

setup: $(STAMP)

# paramlab and its dependencies only: what `make run` needs (no torch).
$(CORE): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e .
	touch $(CORE)

# plus the test tools and the microsoft/mup cross-check (torch, CPU build).
$(STAMP): $(CORE)
	$(PIP) install --quiet -c constraints.txt -e ".[test,mup]"
	touch $(STAMP)

run: $(CORE)
	$(PY) -m experiments.train --config=experiments/configs/demo.py --workdir=$(WORKDIR)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check paramlab experiments benchmarks tests
	$(VENV)/bin/ruff format --check paramlab experiments benchmarks tests

format: $(STAMP)
	$(VENV)/bin/ruff format paramlab experiments benchmarks tests
	$(VENV)/bin/ruff check --fix paramlab experiments benchmarks tests

bench: $(STAMP)
	$(PY) -m benchmarks.optimizers --out=docs/bench
	$(PY) -m benchmarks.parametrization --out=docs/bench
	$(PY) -m benchmarks.train_step --out=docs/bench
	$(PY) -m benchmarks.sweep --out=docs/bench
	$(PY) -m benchmarks.depth --out=docs/bench

clean:
	rm -rf $(VENV) runs .pytest_cache
