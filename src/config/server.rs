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
    /// `[server.tls]`: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of
    /// plain HTTP. Absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// `[server.cors]`: which browser origins may call the gateway.
    #[serde(default)]
    pub cors: CorsSettings,
}

/// `[server.tls]`: the certificate and key the listener serves, reloaded
/// without a restart on SIGHUP and when either file changes (`http::tls`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key_file: String,
}

/// `[server.cors]`: Cross-Origin Resource Sharing for browser clients.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins (`https://app.example.com`, scheme, host and port only) whose
    /// pages may call the gateway, credentials included. Empty: CORS off
    /// (browsers refuse cross-origin calls).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// Whether `origin` is what a browser sends in `Origin`: `http` or `https`,
/// a host, an optional port, and nothing else (no path, no trailing slash,
/// no wildcard: credentials are allowed, and the Fetch standard forbids them
/// with `*`).
pub(crate) fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty()
                && host.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                }) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{origin:?} is not an origin; expected scheme://host[:port] such as https://app.example.com (no path, no trailing slash, no wildcard)"
        )),
    }
}
