DROP TABLE usage_daily;
DROP TABLE request_logs;
DROP TABLE model_redirects;
DROP TABLE model_prices;
DROP TABLE gateway_tokens;
DROP TABLE users;
DROP TABLE provider_keys;
DROP TABLE providers;
