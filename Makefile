# Lapins: `make run` starts the service with demo data, `make test` runs every test. See docs/development.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.lapins-requirements
NODE_STAMP := node_modules/.lapins-package-lock
PYTEST_ARGS ?=
BENCH_ARGS ?=
MUTATE_ARGS ?=

.PHONY: help install run test bench mutate

help:
	@echo "make run    installe ce qu'il faut, prépare la base et lance web + worker + beat (http://127.0.0.1:5000)"
	@echo "make test   lance toute la suite de tests (SQLite puis PostgreSQL, Redis, Chromium) ; PYTEST_ARGS=..."
	@echo "make bench  lance les mesures de performance (python -m bench) sur PostgreSQL et Redis ; BENCH_ARGS=..."
	@echo "make mutate tests de mutation (mutmut) des modules qui tiennent les promesses, hors CI, plusieurs heures (docs/testing.md) ; MUTATE_ARGS=\"booking links\""

install: $(PY_STAMP) $(NODE_STAMP)
	@mkdir -p instance

# Debian's python3 needs python3-venv for `-m venv`; install it if we may, then try again.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 ou plus est requis ($(PYTHON))" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { bash scripts/system-packages python3-venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }

# pip runs only when a requirements file changed since the last install.
$(PY_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# --ignore-scripts: the DSFR package's preinstall script fails, and no package here needs a build step.
$(NODE_STAMP): package.json package-lock.json
	@bash scripts/system-packages npm
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

run: install
	@bash scripts/run

test: install
	@bash scripts/system-packages postgresql redis-server chromium
	@$(PY) scripts/run_tests.py $(PYTEST_ARGS)

bench: install
	@bash scripts/system-packages postgresql redis-server wrk
	@$(PY) -m tests.services --postgres-db BENCH_DATABASE_URL --postgres-statement-counts --redis BENCH_REDIS_URL -- $(PY) -m bench $(BENCH_ARGS)

# Mutation testing, not in CI (hours on two cores, a room at a time: docs/testing.md, « Duration »), and how to read it.
mutate: install
	@bash scripts/system-packages postgresql redis-server
	@nice -n 15 $(PY) scripts/mutate.py $(MUTATE_ARGS)
