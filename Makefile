# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean explorer-assets schema lock

# Everything comes from the hash-locked requirements-dev.lock (the runtime subset is
# requirements.lock); the project itself is then installed editable ("app mode") with no
# dependency resolution of its own, which adds the material-changes and mc-ingest commands.
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP) explorer-assets

# One process: embedded Postgres (when DATABASE_URL is unset), migrations, demo data once,
# the GraphiQL URL and a demo bearer token, then serve until Ctrl-C (which stops Postgres).
run: $(STAMP) explorer-assets
	$(PY) server.py --demo $(RUN_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

# The explorer assets too (when npm is there), so the browser tests run from `make test` alone.
test: lint explorer-assets
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache static/explorer/node_modules

# GraphiQL's pinned npm packages for /graphql (without npm: a message, and the CDN page).
explorer-assets:
	@scripts/install_graphiql.sh

# Re-resolve both lock files after a change to pyproject.toml's dependencies, always with
# the same uv (the version the dev extra pins; installed into .venv first, since the dev lock
# being rebuilt may not have it yet). The runtime lock is constrained to the dev lock's versions.
UV_VERSION := 0.13.10
UV := $(VENV)/bin/uv
LOCK_ARGS := --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock" --quiet
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip compile pyproject.toml scripts/build-requirements.in --extra dev $(LOCK_ARGS) -o requirements-dev.lock
	$(UV) pip compile pyproject.toml scripts/build-requirements.in -c requirements-dev.lock $(LOCK_ARGS) -o requirements.lock

# Regenerate the committed schema snapshot (tests/api/test_schema_snapshot.py compares them).
schema: $(STAMP)
	$(VENV)/bin/strawberry export-schema web.schema_export:schema --output schema.graphql
