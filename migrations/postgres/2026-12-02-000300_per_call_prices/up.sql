-- A fixed price per successful call, in micro-USD, added to the token
-- price (keep in step with ../../sqlite and src/db/schema.rs).
-- Its main use is /proxy endpoints without token usage (images, audio,
-- files), priced under the pseudo-model "proxy:{provider}:{path}";
-- docs/billing.md explains it.
ALTER TABLE model_prices ADD COLUMN per_call_micros BIGINT NOT NULL DEFAULT 0;
