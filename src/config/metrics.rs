//! `[metrics]`: who may read `GET /metrics` besides an admin credential.

use super::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// A bearer token that reads `/metrics` and nothing else (for a
    /// Prometheus scraper that should not hold an admin credential).
    /// Empty: only admin credentials (viewer and up) read it. May be
    /// `${VAR}`.
    pub token: Secret,
}
