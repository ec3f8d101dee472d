//! What one finished client request cost: the row the usage actor batches into
//! `request_logs`, the token counters and the daily rollups.

use serde::{Deserialize, Serialize};

/// One client request, success or failure. Money is in nano-USD (1e-9 USD) so
/// that sums are exact integers on every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unix time in milliseconds when the request arrived.
    pub created_at_ms: i64,
    /// The `x-request-id` the client saw.
    pub request_id: String,
    /// The gateway token's database id; `None` when authentication failed.
    pub token_id: Option<i64>,
    /// The token owner's user id, when the token has one.
    pub user_id: Option<i64>,
    /// The client-facing route, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The provider that served (or last failed) the request.
    pub provider: Option<String>,
    /// The provider key's stable id (never the secret).
    pub key_id: Option<String>,
    /// The model name as the client sent it.
    pub requested_model: Option<String>,
    /// The model name sent upstream after redirects and prefix removal.
    pub upstream_model: Option<String>,
    /// The HTTP status the client received.
    pub status: u16,
    /// A short machine-readable failure class (`upstream_timeout`, `rate_limited`, ...).
    pub error_class: Option<String>,
    /// Time from arrival to the last byte sent, in milliseconds.
    pub latency_ms: i64,
    /// Time from arrival to the first content byte, for streams.
    pub ttft_ms: Option<i64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Cost in nano-USD; zero when `priced` is false.
    pub cost_nanos: i64,
    /// False when no price was known for the model: never a silent $0.
    pub priced: bool,
    /// True when the upstream reported no usage and tokens were estimated.
    pub tokens_estimated: bool,
    pub stream: bool,
    /// Upstream attempts made (0 when the request never reached a provider).
    pub attempts: i32,
    /// Cost at list price before multipliers; `cost_nanos` is what was charged.
    #[serde(default)]
    pub base_cost_nanos: i64,
    /// Token x user price multiplier applied, in parts per million.
    #[serde(default = "one_ppm")]
    pub multiplier_ppm: i64,
    /// The database reservation this request held against its token's
    /// budget or its owner's balance; released when the record is written.
    #[serde(default)]
    pub reservation_id: Option<i64>,
}

fn one_ppm() -> i64 {
    1_000_000
}
