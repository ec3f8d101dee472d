-- Switchyard schema, SQLite flavour. Keep in step with ../../postgres and
-- src/db/schema.rs: ids are BIGINT (INTEGER PRIMARY KEY is SQLite's 64-bit
-- rowid), times are unix milliseconds, money is nano-USD, JSON is TEXT.

CREATE TABLE providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    base_url TEXT,
    config_json TEXT NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE provider_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id BIGINT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    secret_ciphertext TEXT NOT NULL,
    secret_hint TEXT NOT NULL,
    secret_fingerprint TEXT NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    priority INTEGER NOT NULL DEFAULT 0,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (provider_id, key_id),
    UNIQUE (provider_id, secret_fingerprint)
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    balance_nanos BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE gateway_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    allowed_models TEXT,
    budget_nanos BIGINT,
    budget_tokens BIGINT,
    rpm INTEGER,
    tpm INTEGER,
    expires_at BIGINT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    spent_nanos BIGINT NOT NULL DEFAULT 0,
    spent_tokens BIGINT NOT NULL DEFAULT 0,
    request_count BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX gateway_tokens_user_id_idx ON gateway_tokens (user_id);

CREATE TABLE model_prices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL UNIQUE,
    input_per_mtok_micros BIGINT NOT NULL,
    output_per_mtok_micros BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE model_redirects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_model TEXT NOT NULL UNIQUE,
    to_model TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- No foreign keys: logs outlive the tokens, users and providers they name.
CREATE TABLE request_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    token_id BIGINT,
    user_id BIGINT,
    endpoint TEXT NOT NULL,
    provider TEXT,
    key_id TEXT,
    requested_model TEXT,
    upstream_model TEXT,
    status INTEGER NOT NULL,
    error_class TEXT,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    priced BOOLEAN NOT NULL,
    tokens_estimated BOOLEAN NOT NULL,
    stream BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL
);

CREATE INDEX request_logs_created_at_idx ON request_logs (created_at);
CREATE INDEX request_logs_token_id_created_at_idx ON request_logs (token_id, created_at);
CREATE INDEX request_logs_request_id_idx ON request_logs (request_id);

-- Daily rollups per token and requested model ('' when none). day is UTC 'YYYY-MM-DD'.
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    token_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, token_id, model)
);
