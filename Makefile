# Two commands for a newcomer: `make run` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: venv run test test-fast test-repeat lint format api bench bench-quick

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (PYTHON=$(PYTHON))"; exit 1; }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	$(VENV)/bin/taskdispatch run $(RUN_ARGS)

api: venv
	$(PY) -m uvicorn api.main:app --host $${API_HOST:-127.0.0.1} --port $${API_PORT:-8000}

test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The in-process tier (unit specifications and the API in-process): about a minute.
test-fast: venv
	$(PY) -m pytest -q tests/unit tests/api

# Stability of the real-process suites: N full runs in a row, failures counted.
N ?= 10
test-repeat: venv
	$(PY) -m tests.support.repeat --runs $(N)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Benchmarks: docs/benchmarks.md and docs/img/bench-*.png (see bench/README.md).
bench: venv
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(PY) -m bench

bench-quick: venv
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(PY) -m bench --quick
