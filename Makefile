# Switchyard developer tasks. `make help` lists them.
.PHONY: help install run test test-sqlite test-postgres compat-deps lint fmt bench bench-overview migrate ci

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

help:
	@echo "make install   - cargo install --locked --path . (switchyard into ~/.cargo/bin)"
	@echo "make run       - run the gateway on SQLite with settings/example.toml"
	@echo "make test      - every test (unit, SQLite and PostgreSQL integration, and the"
	@echo "                 openai/anthropic Python SDK compat suite and schemathesis;"
	@echo "                 runs compat-deps first)"
	@echo "make compat-deps - create .venv/ and install tests/compat/requirements.txt"
	@echo "                 (pip runs again only when requirements.txt changes)"
	@echo "make lint      - cargo fmt --check and clippy -D warnings"
	@echo "make fmt       - format the code"
	@echo "make bench     - load benchmark: the mock directly, through nginx and through the"
	@echo "                 gateway (SQLite, PostgreSQL), JSON and streams, open streams, lease cost"
	@echo "make migrate   - apply database migrations (database.url from settings)"
	@echo "make ci        - what .ci/run does: lint, then test"

install:
	cargo install --locked --path .

run:
	cargo run --release --bin switchyard -- serve --config settings/example.toml

test: compat-deps
	cargo test --workspace --all-targets --locked

compat-deps: $(COMPAT_STAMP)

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
	bash bench/run.sh
	cargo run --release --locked -p switchyard-actors --example lease_cost
	bash bench/overview.sh

bench-overview:
	bash bench/overview.sh

migrate:
	cargo run --release --bin switchyard -- migrate run

ci: lint test
