# `make run` starts everything on embedded defaults; `make test` runs the test suite.
# Both create .venv on first use. The libvirt binding is installed when the system's libvirt
# headers are there (pkg-config finds libvirt); without it `make run` uses the fake hypervisor.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LIBVIRT_EXTRA := $(shell pkg-config --exists libvirt 2>/dev/null && echo ,libvirt)
STAMP := $(VENV)/.installed$(LIBVIRT_EXTRA)

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test$(LIBVIRT_EXTRA)]'
	touch $@

run: $(STAMP)
	$(BIN)/stratus up

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/stratus_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
