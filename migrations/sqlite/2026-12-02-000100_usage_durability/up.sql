-- Usage that nothing can stop or lose (docs/architecture.md, "Usage durability").

-- The key that makes writing a record twice (a replayed journal, a lost
-- commit acknowledgement) store it once. Gateway-made and unique, unlike
-- request_id, which may be the client's x-request-id. Rows written before
-- this migration get a key of their own.
ALTER TABLE request_logs ADD COLUMN record_id TEXT NOT NULL DEFAULT '';
UPDATE request_logs SET record_id = 'legacy-' || id WHERE record_id = '';
CREATE UNIQUE INDEX request_logs_record_id_idx ON request_logs (record_id);

-- What had to be fixed in the record (comma-separated): string_sanitized,
-- usage_negative, usage_clamped, cost_clamped. NULL: nothing.
ALTER TABLE request_logs ADD COLUMN usage_flags TEXT;

-- Records the database refused (each alone, after its batch was split), kept
-- whole as JSON so that nothing is lost and an admin can see why.
CREATE TABLE usage_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    record_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    error TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX usage_dead_letters_created_at_idx ON usage_dead_letters (created_at);
