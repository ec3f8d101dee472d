DROP TABLE usage_dead_letters;
DROP INDEX request_logs_record_id_idx;
ALTER TABLE request_logs DROP COLUMN usage_flags;
ALTER TABLE request_logs DROP COLUMN record_id;
