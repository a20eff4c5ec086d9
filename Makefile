# pgsched development tasks. Everything installs itself on a fresh Debian
# machine (as root: apt packages; always: .venv). No interactive steps.
#
#   make venv       .venv with pgsched editable + test extra (reruns when pyproject.toml changes)
#   make pg-start   start the private PostgreSQL cluster (scripts/pg.sh; PGSCHED_DB skips it)
#   make stop       stop it
#   make migrate    apply sql/migrations and sql/functions to the pgsched database
#   make lint       ruff + sqlfluff
#   make test       venv, pg-start, lint, pytest (PYTEST_ARGS="-k foo" to narrow)
#   make run        demo (scripts/run.sh; FULL=1: full listings of ../shared/data, DAYS=N)
#   make bench      benchmarks (bench/bench.py; QUICK=1 for a 50k sample)

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
PG := scripts/pg.sh
PYTEST_ARGS ?=

# Lint only what exists (a fresh clone has no empty folders).
PY_PATHS := $(wildcard pyshim tests bench)
SQL_FILES := $(shell find sql -name '*.sql' 2>/dev/null)

.PHONY: venv pg-start stop pg-status migrate lint test run bench clean-venv

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	PYTHON=$(PYTHON) scripts/apt-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "need Python >= 3.11 as $(PYTHON) (make PYTHON=python3.x ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean-venv:
	rm -rf $(VENV)

pg-start:
	$(PG) start

stop:
	$(PG) stop

pg-status:
	$(PG) status

migrate: venv pg-start
	$(VENV)/bin/pgsched db migrate --db "$$($(PG) dsn)"

lint: venv
	$(VENV)/bin/ruff check $(PY_PATHS)
	$(VENV)/bin/ruff format --check $(PY_PATHS)
ifneq ($(SQL_FILES),)
	$(VENV)/bin/sqlfluff lint --disable-progress-bar sql/
endif

# tests/conftest.py reads PGSCHED_TEST_DSN (server and role; it creates its
# own databases). pytest's exit code 5 (no test collected) fails the target.
test: venv pg-start lint
	PGSCHED_TEST_DSN="$$($(PG) dsn)" $(VENV)/bin/pytest $(PYTEST_ARGS)

# ---- filled in by the demo / benchmark owners --------------------------------

run: venv pg-start
	@if [ -x scripts/run.sh ]; then \
		PGSCHED_DSN="$$($(PG) dsn)" FULL="$(FULL)" DAYS="$(DAYS)" scripts/run.sh; \
	else \
		echo "make run: scripts/run.sh does not exist yet"; exit 1; \
	fi

# make bench: full listings (about 15 min); make bench QUICK=1: a 50k sample
# (about a minute). BENCH_ARGS passes more options (bench/bench.py --help).
QUICK ?=
BENCH_ARGS ?=
bench: venv pg-start
	PGSCHED_DSN="$$($(PG) dsn)" $(PY) bench/bench.py $(if $(filter-out 0,$(QUICK)),--quick) $(BENCH_ARGS)
