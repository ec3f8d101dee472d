-- Admin roles (issue 12; docs/admin.md, "Roles"), PostgreSQL flavour (keep
-- in step with ../../sqlite and src/db/schema.rs). Keys registered before
-- roles existed could do everything: they stay `admin`.
ALTER TABLE admin_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CONSTRAINT admin_keys_role_check CHECK (role IN ('admin', 'operator', 'viewer'));
