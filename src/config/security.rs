//! `[security]`: encryption of upstream keys at rest.

use super::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Secret that encrypts provider keys at rest. Empty means: use the key
    /// file below, generating it on first start.
    pub secret_key: Secret,
    /// Where the generated secret is kept (mode 0600) when `secret_key` is empty.
    pub secret_key_file: String,
}
