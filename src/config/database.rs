//! `[database]`: where Switchyard keeps its state.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (or a bare path) for the embedded default,
    /// `postgres://user@host:port/db` for production.
    pub url: String,
    /// Pool size. SQLite serialises writers anyway; a few connections let
    /// readers proceed next to the usage writer (WAL mode).
    pub max_connections: usize,
    /// How long to wait for a connection (pool checkout or a new connection).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How often this instance looks for tokens, users and prices changed
    /// by another instance sharing the database ("0s": never; changes then
    /// show within the token cache's 30 s).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// How long a gateway token read from the database is trusted without
    /// reading it again (changes made through this instance apply at once).
    #[serde(with = "humantime_serde")]
    pub token_cache_ttl: Duration,
    /// While the database is unreachable, a token that was valid when it was
    /// last read keeps working for this long past `token_cache_ttl`
    /// ("0s": refuse with 503 as soon as its entry ages). Tokens with a
    /// money or token budget, or a prepaid owner, need the database for
    /// every request and are refused with 503 during an outage whatever
    /// this says (fail closed; docs/limits.md).
    #[serde(with = "humantime_serde")]
    pub stale_token_grace: Duration,
    /// PostgreSQL only: how long a query, or a transaction of several, may
    /// wait for its answer once it has a connection ("0s": no limit). Past
    /// it the caller gets 503 and the connection is closed. A connection
    /// gone silent (a network partition) would otherwise hold its caller
    /// until TCP gives up, minutes to hours later.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
}

impl DatabaseSettings {
    /// The backend named by the URL.
    pub fn backend(&self) -> Backend {
        if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// [`Self::query_timeout`], with "0s" as no limit.
    pub fn query_timeout_or_none(&self) -> Duration {
        if self.query_timeout.is_zero() {
            Duration::MAX
        } else {
            self.query_timeout
        }
    }

    /// For SQLite, the file path with any `sqlite://` prefix removed.
    pub fn sqlite_path(&self) -> &str {
        self.url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))
            .unwrap_or(&self.url)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}
