//! `[tracing]`: OpenTelemetry traces over OTLP/HTTP (`src/telemetry.rs`).

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP endpoint (`http://127.0.0.1:4318`;
    /// `/v1/traces` is added when missing). Empty: tracing off.
    pub otlp_endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Spans are batched and sent at least this often.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "switchyard".to_owned(),
            export_interval: Duration::from_secs(5),
        }
    }
}
