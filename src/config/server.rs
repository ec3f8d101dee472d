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
    /// How long a request body may take to arrive in full; slower ones get
    /// 408. Zero: no deadline.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Bytes all request bodies being read may hold at once, past each
    /// body's first 64 KiB; a body that would pass it gets 503
    /// `bodies_in_flight` with `Retry-After: 1`. Zero: no cap.
    pub max_body_bytes_in_flight: usize,
    /// How long in-flight requests may run after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// After SIGTERM/Ctrl-C, how long `/readyz` answers 503 `draining` while
    /// every request is still served, before the listener closes, so that a
    /// load balancer's health check takes the instance out of rotation
    /// first. Zero (the default): stop accepting at once.
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// Client API requests served at once; the next one gets 503
    /// `concurrency_limit` with `Retry-After: 1` at once. 0: no limit.
    pub max_concurrent_requests: usize,
}
