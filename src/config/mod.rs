//! Settings, layered with the `config` crate:
//!
//! 1. `settings/default.toml`, embedded in the binary (every key, documented);
//! 2. `settings/{SWITCHYARD_RUN_MODE}.toml` when that variable is set;
//! 3. `settings/local.toml` if present (uncommitted, per machine);
//! 4. the file given by `--config` or `SWITCHYARD_CONFIG`;
//! 5. environment variables `SWITCHYARD__SECTION__KEY` (e.g.
//!    `SWITCHYARD__DATABASE__URL`).
//!
//! Secrets may be written as `${VAR}`. [`Settings::validate`] runs before
//! anything starts, and its error names the key and what is allowed.

pub mod admin;
pub mod database;
pub mod digest;
pub mod health;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod providers;
pub mod proxy;
pub mod secret;
pub mod security;
pub mod server;
pub mod tracing;
pub mod upstream;
pub mod usage;

pub use admin::AdminSettings;
pub use database::{Backend, DatabaseSettings};
pub use digest::SettingsDigest;
pub use health::HealthSettings;
pub use limits::{AuthThrottleSettings, LimitsSettings};
pub use logging::{LogFormat, LoggingSettings};
pub use metrics::MetricsSettings;
pub use models::ModelSettings;
pub use providers::{
    KeySettings, PriceSettings, ProviderInvalid, ProviderKind, ProviderSettings, RetrySettings,
};
pub use proxy::ProxySettings;
pub use secret::{Secret, mask};
pub use security::SecuritySettings;
pub use server::{CorsSettings, ServerSettings, TlsSettings};
pub use tracing::TracingSettings;
pub use upstream::UpstreamSettings;
pub use usage::UsageSettings;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

/// The documented defaults, compiled in so the binary runs from any directory.
pub const DEFAULT_SETTINGS: &str = include_str!("../../settings/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub admin: AdminSettings,
    pub security: SecuritySettings,
    pub logging: LoggingSettings,
    pub usage: UsageSettings,
    pub upstream: UpstreamSettings,
    pub health: HealthSettings,
    pub limits: LimitsSettings,
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub tracing: TracingSettings,
    #[serde(default)]
    pub providers: Vec<ProviderSettings>,
    /// Per-model provider strategy and fallback chain, keyed by model name
    /// (after redirects).
    #[serde(default)]
    pub models: BTreeMap<String, ModelSettings>,
    /// `from = "to"`: a requested model name is rewritten before routing.
    #[serde(default)]
    pub redirects: BTreeMap<String, String>,
    #[serde(default)]
    pub prices: Vec<PriceSettings>,
    /// What loading noticed that the operator should hear about (logged as
    /// warnings once the logger exists): a later layer replacing an earlier
    /// layer's `[[providers]]`, for one.
    #[serde(skip)]
    pub load_warnings: Vec<String>,
    /// Every key as the layers gave it, hashed: what a reload compares to
    /// name the changed settings that need a restart (`src/reload.rs`).
    #[serde(skip)]
    pub digest: SettingsDigest,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not `#[from]`: the config crate's message is the whole story, and as
    /// a `source` too it was printed twice (`{error:#}` shows the chain).
    #[error("could not load settings: {0}")]
    Load(config::ConfigError),
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The shortest `admin.master_key` accepted.
pub const MIN_MASTER_KEY_CHARS: usize = 32;

/// Arrays are not merged across layers: a later file's `[[providers]]`
/// replaces the whole list of an earlier one. Says so for each layer whose
/// list was dropped, since nothing else would.
fn replaced_provider_lists(
    layers: Vec<(String, File<config::FileSourceFile, FileFormat>)>,
) -> Vec<String> {
    let defining: Vec<String> = layers
        .into_iter()
        .filter(|(_, layer)| {
            Config::builder()
                .add_source(layer.clone())
                .build()
                .is_ok_and(|config| config.get_array("providers").is_ok())
        })
        .map(|(name, _)| name)
        .collect();
    let Some((last, earlier)) = defining.split_last() else {
        return Vec::new();
    };
    earlier
        .iter()
        .map(|name| {
            format!(
                "the [[providers]] of {name} are ignored: {last} has its own, and a later \
                 settings layer replaces the whole list (keep every provider in one file)"
            )
        })
        .collect()
}

impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        Self::Load(error)
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    /// Loads the layers described in the module docs and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_SETTINGS, FileFormat::Toml));
        // The file layers, in order, for the check below.
        let mut layers: Vec<(String, File<config::FileSourceFile, FileFormat>)> = Vec::new();
        if let Ok(mode) = std::env::var("SWITCHYARD_RUN_MODE") {
            let name = format!("settings/{mode}");
            builder = builder.add_source(File::with_name(&name).required(true));
            layers.push((name.clone(), File::with_name(&name).required(true)));
        }
        builder = builder.add_source(File::with_name("settings/local").required(false));
        layers.push((
            "settings/local".to_owned(),
            File::with_name("settings/local").required(false),
        ));
        if let Some(path) = config_file {
            builder = builder.add_source(File::from(path).required(true));
            layers.push((path.display().to_string(), File::from(path).required(true)));
        }
        let layered = builder
            .add_source(
                Environment::with_prefix("SWITCHYARD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?;
        let digest = SettingsDigest::of(&layered);
        let mut settings: Settings = layered.try_deserialize()?;
        settings.validate()?;
        settings.load_warnings = replaced_provider_lists(layers);
        settings.digest = digest;
        Ok(settings)
    }

    /// Defaults only, with a throw-away SQLite file: what tests start from.
    pub fn for_tests(data_dir: &Path) -> Result<Self, SettingsError> {
        let mut settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULT_SETTINGS, FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        settings.server.listen = "127.0.0.1:0".to_owned();
        settings.server.workers = 2;
        settings.database.url = format!("sqlite://{}", data_dir.join("switchyard.db").display());
        settings.admin.master_key = Secret::new("test-master-key-0123456789abcdef");
        settings.admin.master_key_file = data_dir.join("master.key").display().to_string();
        settings.admin.key_file = data_dir.join("admin_ed25519.key").display().to_string();
        settings.security.secret_key = Secret::new("test-secret-key");
        settings.security.secret_key_file = data_dir.join("secret.key").display().to_string();
        settings.usage.spill_file = data_dir.join("usage-spill.jsonl").display().to_string();
        settings.usage.journal_dir = data_dir.join("usage-journal").display().to_string();
        settings.logging.level = "error".to_owned();
        // Tests count upstream calls exactly; they refresh model lists
        // through the admin route when they need them.
        settings.upstream.model_refresh_interval = std::time::Duration::ZERO;
        // Tests send bad tokens on purpose from one address; the throttle
        // has tests of its own with low thresholds.
        settings.limits.auth.slow_after = 10_000;
        settings.limits.auth.block_after = 20_000;
        // Tests move manual clocks by months; request logs stay unless a
        // test of retention turns it on (tests/retention.rs).
        settings.usage.retention = std::time::Duration::ZERO;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: formats, ranges and cross-references.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                format!(
                    "{:?} is not a socket address; expected host:port such as 127.0.0.1:8080",
                    self.server.listen
                ),
            ));
        }
        if let Some(tls) = &self.server.tls {
            if tls.cert_file.trim().is_empty() {
                return Err(invalid("server.tls.cert_file", "must name a PEM file"));
            }
            if tls.key_file.trim().is_empty() {
                return Err(invalid("server.tls.key_file", "must name a PEM file"));
            }
        }
        for origin in &self.server.cors.allowed_origins {
            if let Err(why) = server::check_origin(origin) {
                return Err(invalid("server.cors.allowed_origins", why));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.database.url.trim().is_empty() {
            return Err(invalid(
                "database.url",
                "must be a sqlite:// path or a postgres:// URL",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warning", "error", "critical"];
        if !LEVELS.contains(&self.logging.level.as_str()) {
            return Err(invalid(
                "logging.level",
                format!(
                    "{:?} is not one of {}",
                    self.logging.level,
                    LEVELS.join(", ")
                ),
            ));
        }
        if self.admin.challenge_ttl < std::time::Duration::from_secs(1) {
            return Err(invalid("admin.challenge_ttl", "must be at least 1s"));
        }
        if self.admin.session_ttl < std::time::Duration::from_secs(60) {
            return Err(invalid("admin.session_ttl", "must be at least 1m"));
        }
        if self.admin.key_file.trim().is_empty() {
            return Err(invalid("admin.key_file", "must be a file path"));
        }
        if self.usage.journal_dir.trim().is_empty() {
            return Err(invalid("usage.journal_dir", "must name a directory"));
        }
        if !(0.0..=1.0).contains(&self.limits.budget_slice_fraction) {
            return Err(invalid(
                "limits.budget_slice_fraction",
                "must be between 0 and 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.limits.shared_slice_fraction) {
            return Err(invalid(
                "limits.shared_slice_fraction",
                "must be between 0 and 1",
            ));
        }
        if self.usage.max_completion_tokens < 1 {
            return Err(invalid("usage.max_completion_tokens", "must be at least 1"));
        }
        if self.usage.prompt_token_allowance < 0 {
            return Err(invalid(
                "usage.prompt_token_allowance",
                "must not be negative",
            ));
        }
        // A short configured key is guessable online (issue 10, item 7);
        // the generated one is 67 characters.
        let master_key = self.admin.master_key.expose().chars().count();
        if self.admin.master_key_enabled && master_key > 0 && master_key < MIN_MASTER_KEY_CHARS {
            return Err(invalid(
                "admin.master_key",
                format!(
                    "is {master_key} characters long; use at least {MIN_MASTER_KEY_CHARS} (e.g. \
                     `openssl rand -hex 32`), or leave it empty to have one generated"
                ),
            ));
        }
        let metrics_token = self.metrics.token.expose().chars().count();
        if metrics_token > 0 && metrics_token < MIN_MASTER_KEY_CHARS {
            return Err(invalid(
                "metrics.token",
                format!(
                    "is {metrics_token} characters long; use at least {MIN_MASTER_KEY_CHARS} \
                     (e.g. `openssl rand -hex 32`), or leave it empty"
                ),
            ));
        }
        if self.usage.flush_max_records == 0 {
            return Err(invalid("usage.flush_max_records", "must be at least 1"));
        }
        if self.usage.max_buffered_records < self.usage.flush_max_records {
            return Err(invalid(
                "usage.max_buffered_records",
                "must be at least usage.flush_max_records",
            ));
        }
        if self.usage.retention_batch_rows < 1 {
            return Err(invalid("usage.retention_batch_rows", "must be at least 1"));
        }
        if !self.usage.retention.is_zero()
            && self.usage.retention < std::time::Duration::from_secs(3600)
        {
            return Err(invalid(
                "usage.retention",
                "must be at least 1h (or 0s to keep request logs forever)",
            ));
        }
        if self.usage.retention_interval < std::time::Duration::from_millis(100) {
            return Err(invalid(
                "usage.retention_interval",
                "must be at least 100ms",
            ));
        }
        if self.upstream.max_response_bytes == 0 {
            return Err(invalid("upstream.max_response_bytes", "must be positive"));
        }
        if self.upstream.max_stream_event_bytes == 0 {
            return Err(invalid(
                "upstream.max_stream_event_bytes",
                "must be positive",
            ));
        }
        let mut names = HashSet::new();
        for (index, provider) in self.providers.iter().enumerate() {
            let key = |field: &str| format!("providers[{index}].{field}");
            provider
                .validate()
                .map_err(|error| invalid(key(&error.field), error.message))?;
            if !names.insert(provider.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is declared twice", provider.name),
                ));
            }
        }
        for (model, route) in &self.models {
            for (position, fallback) in route.fallbacks.iter().enumerate() {
                let names_provider = fallback.split_once('/').is_some_and(|(provider, rest)| {
                    !rest.is_empty() && self.providers.iter().any(|p| p.name == provider)
                });
                if !names_provider {
                    return Err(invalid(
                        format!("models.{model}.fallbacks[{position}]"),
                        format!("{fallback:?} must be `provider/model` with a declared provider"),
                    ));
                }
            }
        }
        for (from, to) in &self.redirects {
            if from.is_empty() || to.is_empty() {
                return Err(invalid(
                    format!("redirects.{from}"),
                    "source and target must be non-empty model names",
                ));
            }
        }
        for (index, price) in self.prices.iter().enumerate() {
            for (field, value) in [
                ("input_per_mtok", Some(price.input_per_mtok)),
                ("output_per_mtok", Some(price.output_per_mtok)),
                ("cache_read_per_mtok", price.cache_read_per_mtok),
                ("cache_write_per_mtok", price.cache_write_per_mtok),
                ("reasoning_per_mtok", price.reasoning_per_mtok),
                ("per_image", Some(price.per_image)),
                ("per_mchar", Some(price.per_mchar)),
                ("per_audio_second", Some(price.per_audio_second)),
                ("per_search", Some(price.per_search)),
            ] {
                let Some(value) = value else { continue };
                if !value.is_finite() || value < 0.0 {
                    let unit = match field {
                        "per_image" => "USD per image",
                        "per_mchar" => "USD per million characters",
                        "per_audio_second" => "USD per second of audio",
                        "per_search" => "USD per search unit",
                        _ => "USD per million tokens",
                    };
                    return Err(invalid(
                        format!("prices[{index}].{field}"),
                        format!("must be a non-negative number of {unit}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_layer_with_its_own_providers_is_named_with_the_one_it_replaces()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let provider = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://x\"\n";
        let first = dir.path().join("first.toml");
        let second = dir.path().join("second.toml");
        let neither = dir.path().join("neither.toml");
        std::fs::write(&first, provider)?;
        std::fs::write(&second, provider.replace("\"p\"", "\"q\""))?;
        std::fs::write(&neither, "[server]\nworkers = 2\n")?;
        let layer = |path: &Path| {
            (
                path.display().to_string(),
                File::from(path.to_owned()).required(true),
            )
        };
        let warnings =
            replaced_provider_lists(vec![layer(&first), layer(&neither), layer(&second)]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&format!("[[providers]] of {} are ignored", first.display()))
                && warnings[0].contains(&second.display().to_string()),
            "{warnings:?}"
        );
        // One layer with providers (the usual case) says nothing.
        assert!(replaced_provider_lists(vec![layer(&first), layer(&neither)]).is_empty());
        Ok(())
    }

    #[test]
    fn a_negative_media_rate_in_prices_is_refused_naming_its_unit()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::for_tests(dir.path())?;
        settings.prices = vec![PriceSettings {
            model: "tts-1".to_owned(),
            per_mchar: 15.0,
            ..PriceSettings::default()
        }];
        settings.validate()?;
        settings.prices[0].per_audio_second = -0.0001;
        let refused = settings.validate().err().map(|e| e.to_string());
        let refused = refused.unwrap_or_default();
        assert!(
            refused.contains("prices[0].per_audio_second")
                && refused.contains("USD per second of audio"),
            "{refused}"
        );
        settings.prices[0].per_audio_second = f64::NAN;
        assert!(settings.validate().is_err());
        Ok(())
    }
}
