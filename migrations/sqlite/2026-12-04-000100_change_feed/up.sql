-- The change feed's table (see the PostgreSQL migration). On SQLite nothing
-- writes it: instances there keep in line by polling (`src/sync.rs`); the
-- table exists so both backends have the same schema.
CREATE TABLE change_feed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT,
    at BIGINT NOT NULL,
    origin TEXT
);

CREATE INDEX change_feed_at_idx ON change_feed (at);
