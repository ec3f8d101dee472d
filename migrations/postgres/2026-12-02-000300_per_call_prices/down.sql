ALTER TABLE model_prices DROP COLUMN per_call_micros;
