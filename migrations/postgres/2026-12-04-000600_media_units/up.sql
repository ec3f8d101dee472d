-- Media units (issue 15, item 3: the images, audio and rerank doors),
-- recorded and priced, postgres flavour (keep in step with ../../sqlite,
-- src/db/schema.rs and src/db/rollups.rs). docs/billing.md explains them.
--
-- Media units are ON TOP of the tokens (a gpt-image-1 call has both), never
-- inside them: images generated or edited, characters of text turned into
-- speech, milliseconds of audio transcribed or translated, rerank search
-- units. Rows written before this migration hold 0 of each.
ALTER TABLE request_logs ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN search_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN search_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_rollup ADD COLUMN search_units BIGINT NOT NULL DEFAULT 0;
-- The charge of a request names what it paid for, tokens and units alike.
ALTER TABLE billing_records ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_records ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_records ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_records ADD COLUMN search_units BIGINT NOT NULL DEFAULT 0;
-- Micro-USD per image, per million characters, per second of audio (times
-- audio_ms: nano-USD, exact) and per search unit; 0: not charged.
ALTER TABLE model_prices ADD COLUMN per_image_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE model_prices ADD COLUMN per_mchar_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE model_prices ADD COLUMN per_audio_second_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE model_prices ADD COLUMN per_search_micros BIGINT NOT NULL DEFAULT 0;
