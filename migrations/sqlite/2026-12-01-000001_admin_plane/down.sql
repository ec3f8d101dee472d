DROP TABLE operation_logs;
DROP TABLE admin_sessions;
DROP TABLE admin_challenges;
DROP TABLE admin_keys;
DROP TABLE system_values;
