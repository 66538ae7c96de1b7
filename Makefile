# Two commands on a fresh machine (python3, pip and make only):
#   make demo   the main job: the demo DAG against the local Klar sandbox
#   make test   lint, type checks, the whole test suite and the docs build
#   make cluster-demo  the upload mapped over 12 files on Celery: 2 workers, PostgreSQL, Redis, a pool
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The Airflow 2 line (2.11.x), the oldest the package supports: its own environment and lock file.
VENV_AF2  ?= .venv-af211
STAMP_AF2 := $(VENV_AF2)/.installed-stamp
UV_VERSION := 0.13.9

.PHONY: env env-af211 sysdeps demo cluster-demo test lint typecheck unit unit-af211 docs bench lock clean

env: $(STAMP)

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements/dev.lock
	touch $(STAMP)

env-af211: $(STAMP_AF2)

$(STAMP_AF2): requirements/af211.lock pyproject.toml
	test -x $(VENV_AF2)/bin/python || $(PYTHON) -m venv $(VENV_AF2)
	$(VENV_AF2)/bin/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(VENV_AF2)/bin/uv pip sync -q --python $(VENV_AF2)/bin/python requirements/af211.lock
	touch $(STAMP_AF2)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Scale-out: CeleryExecutor, Redis broker, PostgreSQL metadata database, two workers, all on loopback.
cluster-demo: sysdeps $(STAMP)
	$(BIN)/python scripts/cluster/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suites that start a whole Airflow (a browser on its UI, a real scheduler) run in processes of their
# own: Playwright's sync API and Airflow's services leave process-wide state (an event loop, signal
# handlers) that the in-process suites must not inherit.
unit: $(STAMP)
	$(BIN)/pytest -q --ignore=tests/browser --ignore=tests/scheduler
	$(BIN)/pytest -q tests/scheduler
	$(BIN)/pytest -q tests/browser

# The same unit and end-to-end suites on Airflow 2.11 (lint, types and docs run once, on Airflow 3).
unit-af211: $(STAMP_AF2)
	$(VENV_AF2)/bin/pytest -q -m "not airflow3_only" --ignore=tests/browser --ignore=tests/scheduler

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d site

# Debian packages (servers, a browser) the suites need; installed when missing.
sysdeps:
	bash scripts/system-deps.sh

test: sysdeps lint typecheck unit docs unit-af211

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

lock:
	$(BIN)/uv pip compile -q --no-header --python-version 3.11 requirements/dev.in -o requirements/dev.lock
	$(BIN)/uv pip compile -q --no-header --python-version 3.11 requirements/af211.in -o requirements/af211.lock

clean:
	rm -rf $(VENV) $(VENV_AF2) site .mypy_cache .ruff_cache
