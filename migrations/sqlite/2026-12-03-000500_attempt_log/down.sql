ALTER TABLE request_logs DROP COLUMN attempt_log;
