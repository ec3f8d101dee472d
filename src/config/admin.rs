//! `[admin]`: credentials for the admin API.

use super::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer key for `/admin/*` (automation). Empty means: use the key file
    /// below, generating it on first start.
    pub master_key: Secret,
    /// Where the generated master key is kept (mode 0600) when `master_key` is
    /// empty. The CLI reads it from here too.
    pub master_key_file: String,
    /// Turns master-key authentication off entirely.
    pub master_key_enabled: bool,
}
