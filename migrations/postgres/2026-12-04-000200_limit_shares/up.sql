-- Shared rate limits, parallelism and quotas (docs/limits.md, "Limits
-- across instances"). Each instance leases a share of a token's limit and
-- admits from it in memory; `limit_shares` holds one row per instance, token,
-- limit and period (period_start 0 for RPM, TPM and parallelism), live while
-- `expires_at` is ahead. `limit_pools` has one row per token, limit and
-- period whose upsert takes the row lock that serialises the leases of that
-- limit. Keep in step with the other backend's migration and src/db/schema.rs.
CREATE TABLE limit_shares (
    token_id BIGINT NOT NULL,
    limit_key TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, limit_key, period_start, instance_id)
);
CREATE INDEX limit_shares_expires_at ON limit_shares (expires_at);
CREATE TABLE limit_pools (
    token_id BIGINT NOT NULL,
    limit_key TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    leases BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, limit_key, period_start)
);
