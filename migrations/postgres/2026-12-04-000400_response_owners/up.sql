-- Which provider (and key) made each Responses API id that an OpenAI
-- upstream stores, and for which gateway token: GET and DELETE
-- /v1/responses/{id} and `previous_response_id` go back to that provider,
-- from any instance sharing the database. Rows past `expires_at` are
-- ignored, and deleted as new ones are stored. Keep in step with the other backend's
-- migration and src/db/schema.rs.
CREATE TABLE response_owners (
    response_id TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    token_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX response_owners_expires_at ON response_owners (expires_at);
