# `make run` starts everything on embedded defaults; `make test` runs the test suite (with the
# realvm suite of real QEMU guests where QEMU, libvirt's daemons and root are there).
# Both create .venv on first use. The libvirt binding is installed when the system's libvirt
# headers are there (pkg-config finds libvirt); without it `make run` uses the fake hypervisor.
# `make guest` builds the tiny test guest (deploy/guest/), `make realvm` runs only that suite.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LIBVIRT_EXTRA := $(shell pkg-config --exists libvirt 2>/dev/null && echo ,libvirt)
STAMP := $(VENV)/.installed$(LIBVIRT_EXTRA)

.PHONY: run test realvm guest lint bench bench-distributed soak scale fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test$(LIBVIRT_EXTRA)]'
	touch $@

run: $(STAMP)
	$(BIN)/stratus up

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

realvm: $(STAMP) guest
	$(BIN)/python -m pytest -q -m realvm tests/realvm $(PYTEST_ARGS)

guest:
	deploy/guest/build.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/stratus_bench.py

# every role a process (2 gateways, 2 conductors, 2 fake-driver agents) over a PostgreSQL and
# a RabbitMQ of its own: boots/s, CPU per boot by role, lock waits, latencies, memory
# (bench/distributed.py; DISTRIBUTED_ARGS="--gateways 1 --conductors 1,2,4 --cpu-per-boot")
bench-distributed: $(STAMP)
	$(BIN)/python bench/distributed.py $(DISTRIBUTED_ARGS)

soak: $(STAMP)
	$(BIN)/python bench/soak.py

# 1,000 simulated hosts, 4 conductors, 2,000 boots (bench/scale.py; SCALE_ARGS="--hosts 50
# --boots 100 --scaling-boots 20 --page-servers 1000 --seconds 2" for a smoke run)
scale: $(STAMP)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# the nightly fuzzing: 10,000 requests at every route, and the body fuzzers at the same depth
fuzz: $(STAMP)
	STRATUS_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q tests/functional/test_fuzz_routes.py tests/functional/test_fuzz_bodies.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
