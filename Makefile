# Two commands for a newcomer: `make run` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: venv lock run test test-fast test-repeat lint format api bench bench-quick

# The virtualenv installs the generated lock with plain pip (no other tool needed), then the
# package itself editable; its dependencies are the ones just installed.
$(STAMP): requirements/dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (PYTHON=$(PYTHON))"; exit 1; }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# Regenerates requirements/*.lock from pyproject.toml (README, "Dependencies"). dev.lock is the
# one resolution (the dependencies and the `dev` group); runtime.lock (the image) and bench.lock
# (make bench) are resolved under it, so a package has the same version everywhere. Pins
# already in a lock are kept unless LOCK_ARGS lifts them, e.g. LOCK_ARGS='--upgrade-package
# fastapi' or LOCK_ARGS=--upgrade. uv runs from a throwaway virtualenv.
UV_VERSION := 0.13.10
UV_COMPILE = "$$tmp/bin/uv" pip compile --quiet --universal --annotation-style line \
	--custom-compile-command 'make lock' $(LOCK_ARGS) pyproject.toml
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) && \
	$(UV_COMPILE) --group dev -o requirements/dev.lock && \
	$(UV_COMPILE) -c requirements/dev.lock -o requirements/runtime.lock && \
	$(UV_COMPILE) --group bench -c requirements/dev.lock -o requirements/bench.lock

run: venv
	$(VENV)/bin/taskdispatch run $(RUN_ARGS)

api: venv
	$(PY) -m uvicorn api.main:app --host $${API_HOST:-127.0.0.1} --port $${API_PORT:-8000}

# The real-process tests spend most of their time waiting for rounds, not computing: two
# pytest processes (each with its own private Redis) halve the run on a 2-core machine, and
# work stealing keeps the slow tests from piling up on one of them at the end.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist worksteal

test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_PARALLEL)

# The in-process tier (unit specifications and the API in-process): about a minute.
test-fast: venv
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests/unit tests/api

# Stability of the real-process suites: N full runs in a row, failures counted.
N ?= 10
test-repeat: venv
	$(PY) -m tests.support.repeat --runs $(N) --workers $(TEST_WORKERS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Benchmarks: docs/benchmarks.md and docs/img/bench-*.png (see bench/README.md).
bench: venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/bench.lock
	$(PY) -m bench

bench-quick: venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/bench.lock
	$(PY) -m bench --quick
