//! `[admin]`: credentials and the Ed25519 login of the admin API
//! (docs/admin.md).

use super::Secret;
use serde::Deserialize;
use std::time::Duration;

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
    /// Where the first admin key's private half is written (PKCS#8 PEM, mode
    /// 0600) on the first start of a deployment without admin keys.
    pub key_file: String,
    /// How long a login challenge can be answered.
    #[serde(with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// How long an admin session lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How long an instance trusts a session it checked in the database:
    /// the bound on how late a revocation made on another instance applies
    /// here ("0s": check the database on every admin request).
    #[serde(with = "humantime_serde")]
    pub session_cache_ttl: Duration,
}
