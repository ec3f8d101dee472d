-- Admin roles (issue 12; docs/admin.md, "Roles"), SQLite flavour (keep in
-- step with ../../postgres and src/db/schema.rs). Keys registered before
-- roles existed could do everything: they stay `admin`.
ALTER TABLE admin_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('admin', 'operator', 'viewer'));
