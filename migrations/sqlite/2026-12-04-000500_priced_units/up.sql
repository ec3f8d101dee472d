-- Prompt-cache and reasoning tokens, recorded and priced apart (issue 15,
-- item 4), sqlite flavour (keep in step with ../../postgres, src/db/schema.rs
-- and src/db/rollups.rs). docs/billing.md explains the fields.
--
-- Token parts are INSIDE the totals, never added to them: cache reads and
-- writes are part of prompt_tokens (every input token), reasoning is part
-- of completion_tokens (every output token).
ALTER TABLE request_logs ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
-- Micro-USD per million tokens of each part; NULL: charged at the input
-- rate (cache reads, cache writes) or the output rate (reasoning), as
-- providers bill when they have no separate rate.
ALTER TABLE model_prices ADD COLUMN cache_read_per_mtok_micros BIGINT;
ALTER TABLE model_prices ADD COLUMN cache_write_per_mtok_micros BIGINT;
ALTER TABLE model_prices ADD COLUMN reasoning_per_mtok_micros BIGINT;
