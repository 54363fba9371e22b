# paramlab: `make run` sets up and trains the demo model; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CORE := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
FLOOR_VENV := .venv-floor
# the smoke test at the dependency floors (constraints-floor.txt): the README, every optimizer, the
# parametrization engine, both Flax adapters, the training loop, checkpoints and the metric writers
FLOOR_SMOKE := tests/test_readme.py tests/optim/test_alias.py tests/optim/test_common.py \
	tests/parametrization/test_plan.py tests/nn tests/train/test_loop.py tests/train/test_writers.py
WORKDIR ?= runs/demo

.PHONY: setup run test test-floor lint format bench results clean

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

# paramlab with every dependency at its floor version (a separate venv), then the smoke tests.
test-floor:
	test -x $(FLOOR_VENV)/bin/python || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/pip install --quiet -c constraints-floor.txt -e . pytest pytest-xdist grain tensorboardX
	$(FLOOR_VENV)/bin/python -m pytest -n 2 -q -p no:cacheprovider $(FLOOR_SMOKE)

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
	$(PY) -m benchmarks.mup_sweep --out=docs/bench

# docs/results.md's runs and figures (many CPU hours); SECTIONS="12 13" runs only those sections.
results: $(STAMP)
	PYTHON=$(PY) bash experiments/results.sh $(SECTIONS)

clean:
	rm -rf $(VENV) $(FLOOR_VENV) runs .pytest_cache
