//! `[logging]`: the slog root logger.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// `trace`, `debug`, `info`, `warning`, `error` or `critical`.
    pub level: String,
    pub format: LogFormat,
    /// One access line per request at info level.
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Terminal,
    /// One JSON object per line, for log shippers.
    Json,
}
