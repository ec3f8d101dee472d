//! `[upstream]`: HTTP client limits for calls to providers.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// TCP + TLS connect limit.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit from sending the request to receiving the response head.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Overall limit for a request's upstream phase, across every attempt,
    /// backoff and cooldown wait, up to the answer (a stream: its first
    /// content); 504 after it. "0s": none.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest silence allowed between two chunks of a streamed answer.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Largest non-streamed upstream answer read into memory.
    pub max_response_bytes: usize,
    /// Largest single event of a streamed answer; a larger one ends the
    /// stream with an error event.
    pub max_stream_event_bytes: usize,
    /// When every candidate key is cooling down, wait at most this long in
    /// total for the earliest one instead of answering 429/503 at once.
    #[serde(with = "humantime_serde")]
    pub max_cooldown_wait: Duration,
    /// A client that disconnects cancels its upstream request at once
    /// (HTTP/1 half-closed connections are treated as gone).
    pub cancel_on_client_disconnect: bool,
    /// `max_tokens` sent to providers that require it (Anthropic) when the
    /// client gave none.
    pub default_max_tokens: u64,
    /// How often each provider's model list is fetched into the model
    /// cache ("0s": only on `POST /admin/models/{provider}/refresh`).
    #[serde(with = "humantime_serde")]
    pub model_refresh_interval: Duration,
}
