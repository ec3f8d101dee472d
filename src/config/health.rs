//! `[health]`: background probes that bring keys back after their circuit
//! opened, without risking client traffic on them.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// How often half-open keys are probed with the provider's model list
    /// (`GET {base_url}/models`); `0s` turns probes off (keys then recover
    /// through half-open client traffic only).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A probe that takes longer counts as a timeout.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}
