# Switchyard developer tasks. `make help` lists them.
.PHONY: help install run test test-sqlite test-postgres compat-deps client-deps lint fmt bench bench-overview migrate ci

# Where the PostgreSQL tests create their schemas.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

# The SDK compatibility suite (tests/compat, run by tests/python_sdk.rs) needs
# the official openai and anthropic SDKs in this virtualenv; tests/schemathesis.rs
# needs schemathesis. Both are in tests/compat/requirements.txt.
PYTHON ?= python3
VENV := .venv
COMPAT_REQUIREMENTS := tests/compat/requirements.txt
COMPAT_STAMP := $(VENV)/.requirements.stamp

# Client programs the tests drive through the gateway (tests/gemini_cli.rs:
# the Gemini CLI), pinned in tests/clients/package-lock.json and installed by
# `npm ci` into tests/clients/node_modules/ when the lock file changes.
CLIENTS := tests/clients
CLIENTS_STAMP := $(CLIENTS)/node_modules/.lock.stamp

help:
	@echo "make install   - cargo install --locked --path . (switchyard into ~/.cargo/bin)"
	@echo "make run       - run the gateway on SQLite with settings/example.toml"
	@echo "make test      - every test (unit, SQLite and PostgreSQL integration, and the"
	@echo "                 openai/anthropic/google-genai Python SDK compat suite, the Gemini"
	@echo "                 CLI and schemathesis; runs compat-deps and client-deps first)"
	@echo "make compat-deps - create .venv/ and install tests/compat/requirements.txt"
	@echo "                 (pip runs again only when requirements.txt changes)"
	@echo "make client-deps - npm ci the test clients of tests/clients (the Gemini CLI)"
	@echo "make lint      - cargo fmt --check and clippy -D warnings"
	@echo "make fmt       - format the code"
	@echo "make bench     - load benchmark: the mock directly, through nginx and through the"
	@echo "                 gateway (SQLite, PostgreSQL) and the baseline commit's gateway (built"
	@echo "                 once by bench/baseline.sh), JSON and streams, open streams, lease cost"
	@echo "make migrate   - apply database migrations (database.url from settings)"
	@echo "make ci        - what .ci/run does: lint, then test"

install:
	cargo install --locked --path .

run:
	cargo run --release --bin switchyard -- serve --config settings/example.toml

test: compat-deps client-deps
	cargo test --workspace --all-targets --locked

compat-deps: $(COMPAT_STAMP)

client-deps: $(CLIENTS_STAMP)

# --ignore-scripts: the CLI's optional native helpers (keychain, pty) are not
# built; the tests run it headless with an API key.
$(CLIENTS_STAMP): $(CLIENTS)/package-lock.json $(CLIENTS)/package.json
	command -v npm >/dev/null 2>&1 || { echo "npm is required for the test clients (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd $(CLIENTS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# --clear: a venv whose interpreter went away (Python upgraded) is rebuilt
# whole. A failed creation (Debian without python3-venv) leaves nothing behind.
$(VENV)/bin/python:
	$(PYTHON) -m venv --clear $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed: install Python 3 with its venv module (Debian: apt-get install python3-venv)" >&2; \
	  exit 1; }

$(COMPAT_STAMP): $(COMPAT_REQUIREMENTS) $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(COMPAT_REQUIREMENTS)
	touch $@

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

bench:
	BENCH_BASELINE_BIN="$$(bash bench/baseline.sh || echo)" bash bench/run.sh
	cargo run --release --locked -p switchyard-actors --example lease_cost
	bash bench/overview.sh

bench-overview:
	bash bench/overview.sh

migrate:
	cargo run --release --bin switchyard -- migrate run

ci: lint test
