# Tally's entry points. `make demo` and `make test` are all a new user needs.
# The environment is created on first use: uv (pinned) in .tools/, the project
# and its locked dependencies in .venv/ (from uv.lock).

UV_VERSION := 0.13.8
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: env lint test test-fast bench demo up down lock clean

env: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Each entry point installs what it needs from uv.lock: the tests everything (the dev and
# bench groups), the benchmarks the bench group, the demo and the local stack neither.
# The partial syncs are --inexact: a plain `uv sync` removes what it was not asked for,
# which would take the test tools away from a developer who ran `make test` before.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@scripts/check-java
	$(UV) sync --frozen --all-extras
	@touch $@

$(VENV)/.synced-bench: pyproject.toml uv.lock | $(UV)
	@scripts/check-java
	$(UV) sync --frozen --all-extras --no-default-groups --group bench --inexact
	@touch $@

$(VENV)/.synced-runtime: pyproject.toml uv.lock | $(UV)
	@scripts/check-java
	$(UV) sync --frozen --all-extras --no-default-groups --inexact
	@touch $@

# Style, types, the layer contracts (pyproject.toml [tool.importlinter]) and the dashboard's JavaScript.
lint: env node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	npx --no-install eslint dashboard_api/static

# eslint, pinned by package-lock.json (npm registry).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Test files run on TEST_WORKERS pytest-xdist workers (one file stays on one worker, so a
# module's fixtures are built once); TEST_WORKERS=0 runs them in this process, one at a time.
TEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The dashboard's browser test drives Debian's chromium and chromedriver (installed with apt-get if missing).
test: env
	@scripts/install-chromium
	$(PYTEST)

# The inner loop: unit and API tests against a real Redis; no Spark, Airflow or browser (see tests/conftest.py).
test-fast: env
	$(PYTEST) -m "not slow and not e2e and not browser"

bench: $(VENV)/.synced-bench
	$(PY) -m bench.suite
	$(PY) -m bench.window_latency

demo: $(VENV)/.synced-runtime
	$(PY) -m tally.app.local demo

# `make up AIRFLOW_DB=postgres` keeps Airflow's metadata in the local PostgreSQL (database tally_airflow,
# created if missing) with the LocalExecutor; AIRFLOW_DB=postgresql+psycopg2://user:pw@host:5432/db for any other.
# `make up SPARK=connect` also starts a Spark Connect server (127.0.0.1:15002) that the DAG tasks run on.
up: $(VENV)/.synced-runtime
	$(if $(AIRFLOW_DB),TALLY_AIRFLOW_DATABASE_URL='$(AIRFLOW_DB)' )$(if $(SPARK),TALLY_LOCAL_SPARK='$(SPARK)' )$(PY) -m tally.app.local up

down:
	@if [ -x $(PY) ]; then $(PY) -m tally.app.local down; fi

lock: | $(UV)
	$(UV) lock

clean: down
	rm -rf $(VENV) .tools .tally .airflow node_modules
