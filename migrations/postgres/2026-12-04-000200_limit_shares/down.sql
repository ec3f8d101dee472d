DROP TABLE limit_pools;
DROP TABLE limit_shares;
