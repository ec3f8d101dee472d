-- Each upstream attempt of a request that failed over (provider, key id,
-- outcome, start and duration), as a JSON array; NULL when the request made
-- one attempt or none (the row's own columns describe it). Keep in step
-- with the other backend's migration and src/db/schema.rs.
ALTER TABLE request_logs ADD COLUMN attempt_log TEXT;
