-- The admin plane, SQLite flavour (keep in step with ../../postgres and
-- src/db/schema.rs): deployment-wide values, Ed25519 admin keys, login
-- challenges, sessions and the operation log. docs/admin.md explains them.

-- Values every instance sharing the database agrees on: `server_id` (the
-- domain of the admin login's signed message) and `data_key` (the key that
-- encrypts provider keys, wrapped by the master secret).
CREATE TABLE system_values (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- public_key is base64url (no padding) of the 32-byte Ed25519 key;
-- fingerprint is "SHA256:" and base64 (no padding) of its SHA-256.
CREATE TABLE admin_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    last_login_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Single use: a login sets used_at, only where it is still NULL.
CREATE TABLE admin_challenges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce TEXT NOT NULL UNIQUE,
    admin_key_id BIGINT NOT NULL REFERENCES admin_keys (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX admin_challenges_key_idx ON admin_challenges (admin_key_id, expires_at);
CREATE INDEX admin_challenges_expires_at_idx ON admin_challenges (expires_at);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE admin_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    admin_key_id BIGINT NOT NULL REFERENCES admin_keys (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX admin_sessions_key_idx ON admin_sessions (admin_key_id);

-- No foreign keys: the log outlives the keys and sessions it names.
-- before_json/after_json hold masked views, never a secret.
CREATE TABLE operation_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    session_id BIGINT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT,
    request_id TEXT
);

CREATE INDEX operation_logs_created_at_idx ON operation_logs (created_at);
CREATE INDEX operation_logs_actor_idx ON operation_logs (actor, created_at);
CREATE INDEX operation_logs_action_idx ON operation_logs (action, created_at);
