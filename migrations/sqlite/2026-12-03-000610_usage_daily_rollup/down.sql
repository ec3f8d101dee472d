DROP TABLE usage_daily_rollup;
