ALTER TABLE admin_keys DROP COLUMN role;
