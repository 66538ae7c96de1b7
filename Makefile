# Two commands on a fresh machine (python3, pip and make only):
#   make demo   the main job: the demo DAG against the local Klar sandbox
#   make test   lint, type checks, the whole test suite and the docs build
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9

.PHONY: env sysdeps demo test lint typecheck unit docs bench lock clean

env: $(STAMP)

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements/dev.lock
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d site

# Debian packages (servers, a browser) the suites need; installed when missing.
sysdeps:
	bash scripts/system-deps.sh

test: sysdeps lint typecheck unit docs

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

lock:
	$(BIN)/uv pip compile -q --no-header --python-version 3.11 requirements/dev.in -o requirements/dev.lock

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache
