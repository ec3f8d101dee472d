-- Issue 5: limits, reservations, users' balances and billing.
-- Money is nano-USD, multipliers are parts per million (1000000 = x1).

ALTER TABLE gateway_tokens ADD COLUMN max_parallel INTEGER;
-- JSON list of {"period": "minute|hour|day|month", "kind": "requests|tokens|cost", "limit": N}
ALTER TABLE gateway_tokens ADD COLUMN quotas TEXT;
ALTER TABLE gateway_tokens ADD COLUMN price_multiplier_ppm BIGINT;
-- Estimates held by requests in flight (see the reservations table).
ALTER TABLE gateway_tokens ADD COLUMN reserved_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gateway_tokens ADD COLUMN reserved_tokens BIGINT NOT NULL DEFAULT 0;
-- Token rotation: the replaced token keeps working until this time.
ALTER TABLE gateway_tokens ADD COLUMN previous_token_hash TEXT;
ALTER TABLE gateway_tokens ADD COLUMN previous_expires_at BIGINT;
CREATE INDEX gateway_tokens_previous_hash_idx ON gateway_tokens (previous_token_hash);

-- Prepaid users are refused once balance - reserved is spent; the others
-- run a tab (their balance goes negative).
ALTER TABLE users ADD COLUMN prepaid BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN price_multiplier_ppm BIGINT;
ALTER TABLE users ADD COLUMN reserved_nanos BIGINT NOT NULL DEFAULT 0;

-- Every token belongs to a user: tokens created before users existed go to
-- the default user.
INSERT INTO users (name, balance_nanos, status, created_at, updated_at)
SELECT 'default', 0, 'active', 0, 0
WHERE NOT EXISTS (SELECT 1 FROM users WHERE name = 'default');
UPDATE gateway_tokens SET user_id = (SELECT id FROM users WHERE name = 'default')
WHERE user_id IS NULL;

-- One row per admitted request holding an estimate against a token's
-- budget (and its user's balance) until the request settles or expires.
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id BIGINT NOT NULL,
    user_id BIGINT,
    nanos BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    user_nanos BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX reservations_expires_at_idx ON reservations (expires_at);

-- Charges (one per metered request with a token) and top-ups.
CREATE TABLE billing_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    user_id BIGINT,
    token_id BIGINT,
    model TEXT,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    base_cost_nanos BIGINT NOT NULL DEFAULT 0,
    multiplier_ppm BIGINT NOT NULL DEFAULT 1000000,
    amount_nanos BIGINT NOT NULL,
    priced BOOLEAN NOT NULL DEFAULT TRUE,
    note TEXT
);
CREATE INDEX billing_records_user_idx ON billing_records (user_id, created_at);
CREATE INDEX billing_records_token_idx ON billing_records (token_id, created_at);
