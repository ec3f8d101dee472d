# Switchyard developer tasks. `make help` lists them.
.PHONY: help run test test-sqlite test-postgres lint fmt bench migrate ci

# Where the PostgreSQL tests create their schemas.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

help:
	@echo "make run       - run the gateway on SQLite with settings/example.toml"
	@echo "make test      - every test (unit, SQLite and PostgreSQL integration)"
	@echo "make lint      - cargo fmt --check and clippy -D warnings"
	@echo "make fmt       - format the code"
	@echo "make bench     - load benchmark: direct mock vs through the gateway"
	@echo "make migrate   - apply database migrations (database.url from settings)"
	@echo "make ci        - what .ci/run does: lint, then test"

run:
	cargo run --release --bin switchyard -- serve --config settings/example.toml

test:
	cargo test --workspace --all-targets --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

bench:
	bash bench/run.sh
	cargo run --release --locked -p switchyard-actors --example lease_cost

migrate:
	cargo run --release --bin switchyard -- migrate run

ci: lint test
