//! `[server]`: the HTTP listener.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port` to listen on.
    pub listen: String,
    /// actix-web worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Client API requests served at once; the next one gets 503
    /// `concurrency_limit` with `Retry-After: 1` at once. 0: no limit.
    pub max_concurrent_requests: usize,
}
