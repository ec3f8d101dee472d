//! The configuration the database stores: settings applied to it at start
//! ([`apply_settings`]), then read back for the actors (`load_*`,
//! [`DbKeySource`]) and by the admin API, which edits the same rows.
//! (Once `seed.rs`; it is where stored configuration comes and goes, not a
//! one-off seeding. Its log events keep their `seed.*` names.)
//!
//! Providers, keys, prices and redirects declared in settings are upserted
//! into the database on every start; the database is then the source of
//! truth (keys added through the admin API survive restarts, keys removed
//! from settings are not deleted). Provider keys are stored encrypted.
//! Providers created through the admin API live only in the database; one
//! declared in settings is upserted again at every start, so an admin's
//! change to it (or its deletion) lasts until the next start.
//! The list prices of common models (`settings/prices.toml`, compiled in)
//! then fill in models that have no price yet, never replacing one.

use crate::config::{PriceSettings, ProviderKind, ProviderSettings, Settings, mask};
use crate::crypto::{SecretCipher, SecretRow};
use crate::db::providers::{NewProvider, NewProviderKey, Provider};
use crate::db::{Db, DbError};
use crate::metering::Price;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use slog::{Logger, info, warn};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use switchyard_actors::{KeySpec, KeyStrategy, ProviderSpec, RetryPolicy};

/// What `providers.config_json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct ProviderConfig {
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    strategy: Option<String>,
    /// Extra headers, encrypted as one JSON object (values may be secrets).
    #[serde(default)]
    headers_ciphertext: Option<String>,
    #[serde(default)]
    retry: Option<RetryConfig>,
    /// Per-key concurrency limit (0: none).
    #[serde(default)]
    max_in_flight_per_key: u32,
    /// Share of traffic under a model's `weighted` strategy.
    #[serde(default = "one")]
    weight: u32,
    /// Azure `api-version` / `anthropic-version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    /// The provider's place among `[[providers]]` in settings, written at
    /// every start: routing tries a model's providers in declaration order
    /// (`first-available`), which the name order rows come back in is
    /// not. `None` for a provider created through the admin API; those
    /// follow the declared ones, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<u32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct RetryConfig {
    max_attempts: u32,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    rate_limit_cooldown_ms: u64,
    error_cooldown_ms: u64,
    failure_threshold: u32,
    #[serde(default)]
    attempt_timeout_ms: Option<u64>,
}

impl From<&RetryPolicy> for RetryConfig {
    fn from(policy: &RetryPolicy) -> Self {
        Self {
            max_attempts: policy.max_attempts,
            backoff_base_ms: policy.backoff_base.as_millis() as u64,
            backoff_max_ms: policy.backoff_max.as_millis() as u64,
            rate_limit_cooldown_ms: policy.rate_limit_cooldown.as_millis() as u64,
            error_cooldown_ms: policy.error_cooldown.as_millis() as u64,
            failure_threshold: policy.failure_threshold,
            attempt_timeout_ms: policy
                .attempt_timeout
                .map(|timeout| timeout.as_millis() as u64),
        }
    }
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(config: &RetryConfig) -> Self {
        use std::time::Duration;
        Self {
            max_attempts: config.max_attempts,
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_millis(config.backoff_max_ms),
            rate_limit_cooldown: Duration::from_millis(config.rate_limit_cooldown_ms),
            error_cooldown: Duration::from_millis(config.error_cooldown_ms),
            failure_threshold: config.failure_threshold,
            attempt_timeout: config.attempt_timeout_ms.map(Duration::from_millis),
        }
    }
}

/// A key strategy as settings write it (`round-robin`).
pub fn strategy_name(strategy: KeyStrategy) -> &'static str {
    match strategy {
        KeyStrategy::FirstAvailable => "first-available",
        KeyStrategy::RoundRobin => "round-robin",
        KeyStrategy::Random => "random",
        KeyStrategy::Weighted => "weighted",
        KeyStrategy::LeastInFlight => "least-in-flight",
        KeyStrategy::Latency => "latency",
    }
}

fn parse_strategy(name: &str) -> KeyStrategy {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).unwrap_or_default()
}

/// Upserts everything declared in settings.
pub async fn apply_settings(
    db: &Db,
    settings: &Settings,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<()> {
    for (position, provider) in (0..).zip(&settings.providers) {
        apply_provider(db, provider, Some(position), cipher, log).await?;
    }
    for price in &settings.prices {
        db.upsert_token_prices(&price.model, &price.price())
            .await
            .with_context(|| format!("storing the price of {}", price.model))?;
    }
    for (from, to) in &settings.redirects {
        db.upsert_redirect(from, to)
            .await
            .with_context(|| format!("storing the redirect {from}"))?;
    }
    if settings.usage.seed_list_prices {
        fill_list_prices(db, log).await?;
    }
    Ok(())
}

/// The list prices shipped with the binary.
pub const LIST_PRICES: &str = include_str!("../settings/prices.toml");

/// `settings/prices.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPrices {
    /// When the prices were last checked against the vendors' pages.
    pub as_of: String,
    pub prices: Vec<PriceSettings>,
}

/// Parses [`LIST_PRICES`].
pub fn list_prices() -> anyhow::Result<ListPrices> {
    config::Config::builder()
        .add_source(config::File::from_str(
            LIST_PRICES,
            config::FileFormat::Toml,
        ))
        .build()?
        .try_deserialize()
        .context("settings/prices.toml is malformed")
}

/// Stores the list price of each model in [`LIST_PRICES`] that has no
/// price yet (so an admin's price always wins).
async fn fill_list_prices(db: &Db, log: &Logger) -> anyhow::Result<()> {
    let list = list_prices()?;
    let rows: Vec<(String, Price)> = list
        .prices
        .iter()
        .map(|price| (price.model.clone(), price.price()))
        .collect();
    let added = db
        .insert_prices_if_absent(&rows)
        .await
        .context("storing the list prices")?;
    if !added.is_empty() {
        info!(log, "seed.list_prices"; "added" => added.len(), "as_of" => &list.as_of);
    }
    Ok(())
}

/// The `providers` row of a provider (headers encrypted); its keys are
/// rows of their own. Settings and the admin API store providers alike.
/// The row storing `provider`; `position` is its place in settings (see
/// `ProviderConfig::position`; an admin change keeps the row's own,
/// [`declared_position`]).
pub fn provider_record(
    provider: &ProviderSettings,
    position: Option<u32>,
    cipher: &SecretCipher,
) -> anyhow::Result<NewProvider> {
    let headers: BTreeMap<&str, &str> = provider
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.expose()))
        .collect();
    let headers_ciphertext = if headers.is_empty() {
        None
    } else {
        Some(cipher.encrypt_for(
            SecretRow::ProviderHeaders {
                provider: &provider.name,
            },
            &serde_json::to_string(&headers)?,
        )?)
    };
    let config = ProviderConfig {
        models: provider.models.clone(),
        strategy: Some(strategy_name(provider.strategy).to_owned()),
        headers_ciphertext,
        retry: Some(RetryConfig::from(&provider.retry.policy())),
        max_in_flight_per_key: provider.max_in_flight_per_key,
        weight: provider.weight,
        api_version: provider.api_version.clone(),
        position,
    };
    Ok(NewProvider {
        name: provider.name.clone(),
        kind: provider.kind.as_str().to_owned(),
        base_url: Some(provider.base_url.clone()),
        config_json: serde_json::to_string(&config)?,
        enabled: provider.enabled,
    })
}

/// A stored provider's place among `[[providers]]` in settings, if it was
/// declared there (an unreadable row has none).
pub fn declared_position(row: &Provider) -> Option<u32> {
    serde_json::from_str::<ProviderConfig>(&row.config_json)
        .ok()?
        .position
}

/// A stored provider as settings (headers decrypted, no keys): what the
/// admin API shows (masked) and changes.
pub fn stored_settings(row: &Provider, cipher: &SecretCipher) -> anyhow::Result<ProviderSettings> {
    let config: ProviderConfig = serde_json::from_str(&row.config_json)
        .with_context(|| format!("provider {}: unreadable config_json", row.name))?;
    let kind = ProviderKind::parse(&row.kind)
        .with_context(|| format!("provider {}: unknown kind {:?}", row.name, row.kind))?;
    let headers = match &config.headers_ciphertext {
        Some(ciphertext) => {
            let bound_to = SecretRow::ProviderHeaders {
                provider: &row.name,
            };
            let json = cipher.decrypt_for(bound_to, ciphertext).with_context(|| {
                format!(
                    "provider {}: cannot decrypt headers (wrong security.secret_key?)",
                    row.name
                )
            })?;
            serde_json::from_str::<BTreeMap<String, String>>(&json)?
                .into_iter()
                .map(|(name, value)| (name, crate::config::Secret::new(value)))
                .collect()
        }
        None => BTreeMap::new(),
    };
    let policy = config
        .retry
        .as_ref()
        .map(RetryPolicy::from)
        .unwrap_or_default();
    Ok(ProviderSettings {
        name: row.name.clone(),
        kind,
        base_url: row.base_url.clone().unwrap_or_default(),
        api_version: config.api_version,
        keys: Vec::new(),
        models: config.models,
        headers,
        strategy: config
            .strategy
            .as_deref()
            .map(parse_strategy)
            .unwrap_or_default(),
        retry: crate::config::RetrySettings {
            max_attempts: policy.max_attempts,
            backoff_base: policy.backoff_base,
            backoff_max: policy.backoff_max,
            rate_limit_cooldown: policy.rate_limit_cooldown,
            error_cooldown: policy.error_cooldown,
            failure_threshold: policy.failure_threshold,
            attempt_timeout: policy.attempt_timeout,
        },
        weight: config.weight,
        max_in_flight_per_key: config.max_in_flight_per_key,
        enabled: row.enabled,
    })
}

async fn apply_provider(
    db: &Db,
    provider: &ProviderSettings,
    position: Option<u32>,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<()> {
    let row = db
        .upsert_provider(&provider_record(provider, position, cipher)?)
        .await
        .with_context(|| format!("storing provider {}", provider.name))?;
    for (index, key) in provider.keys.iter().enumerate() {
        let secret = key.secret().expose().trim();
        let key_id = key.id(index);
        if secret.is_empty() {
            warn!(log, "seed.empty_key_skipped"; "provider" => &provider.name, "key_id" => &key_id);
            continue;
        }
        let new = NewProviderKey {
            provider_id: row.id,
            key_id: key_id.clone(),
            secret_ciphertext: cipher.encrypt_for(
                SecretRow::ProviderKey {
                    provider: &provider.name,
                    key_id: &key_id,
                },
                secret,
            )?,
            secret_hint: mask(secret),
            secret_fingerprint: cipher.fingerprint(secret),
            weight: i32::try_from(key.weight()).unwrap_or(i32::MAX),
            priority: key.priority(),
            enabled: true,
        };
        store_seeded_key(db, &new)
            .await
            .with_context(|| format!("storing key {key_id} of provider {}", provider.name))?;
    }
    info!(log, "seed.provider"; "provider" => &provider.name, "keys" => provider.keys.len());
    Ok(())
}

/// Upserts a key from the settings. Instances starting together on one
/// PostgreSQL seed the same keys at the same moment, and PostgreSQL checks
/// a concurrent insert against the `(provider, fingerprint)` index before the
/// `(provider, key id)` upsert can see the other instance's row: one of them
/// gets a unique violation. Once that row is committed the same upsert is an
/// update, so a conflict is tried again (a real one, the same secret under
/// two ids, fails every time and is reported).
async fn store_seeded_key(db: &Db, new: &NewProviderKey) -> Result<(), DbError> {
    const TRIES: usize = 3;
    let mut tries = 0;
    loop {
        tries += 1;
        match db.upsert_provider_key(new).await {
            Err(DbError::Conflict(_)) if tries < TRIES => continue,
            result => return result.map(drop),
        }
    }
}

/// A provider ready to become an actor.
pub struct LoadedProvider {
    pub spec: ProviderSpec,
    pub keys: Vec<KeySpec>,
    pub models: Vec<String>,
    pub weight: u32,
}

/// Keys from the database, for provider actors restarted after a panic.
pub struct DbKeySource {
    pub db: Db,
    pub cipher: Arc<SecretCipher>,
    pub log: Logger,
}

impl switchyard_actors::KeySource for DbKeySource {
    fn load(
        &self,
        provider: &str,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<KeySpec>, String>> {
        let (db, cipher, log, name) = (
            self.db.clone(),
            self.cipher.clone(),
            self.log.clone(),
            provider.to_owned(),
        );
        Box::pin(async move {
            match load_provider_by_name(&db, &name, &cipher, &log).await {
                Ok(Some(loaded)) => Ok(loaded.keys),
                Ok(None) => Err(format!("provider {name} is no longer in the database")),
                Err(error) => Err(format!("{error:#}")),
            }
        })
    }
}

/// Reads enabled providers and their keys (decrypted) from the database,
/// in routing order: those declared in settings as declared, then the
/// others (created through the admin API) oldest first.
pub async fn load_providers(
    db: &Db,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<Vec<LoadedProvider>> {
    let mut rows = db.list_providers().await?;
    rows.sort_by_cached_key(|row| {
        let position = declared_position(row);
        (position.is_none(), position, row.id)
    });
    let mut loaded = Vec::new();
    for row in rows {
        if !row.enabled {
            continue;
        }
        if ProviderKind::parse(&row.kind).is_none() {
            warn!(log, "seed.provider_kind_unsupported"; "provider" => &row.name, "kind" => &row.kind);
            continue;
        }
        loaded.push(load_provider(db, &row, cipher, log).await?);
    }
    Ok(loaded)
}

/// Reads one provider and its keys (decrypted) from the database: what an
/// admin change to its keys reloads into the running actor.
pub async fn load_provider_by_name(
    db: &Db,
    name: &str,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<Option<LoadedProvider>> {
    match db.get_provider_by_name(name).await? {
        Some(row) => Ok(Some(load_provider(db, &row, cipher, log).await?)),
        None => Ok(None),
    }
}

async fn load_provider(
    db: &Db,
    row: &Provider,
    cipher: &SecretCipher,
    log: &Logger,
) -> anyhow::Result<LoadedProvider> {
    let config: ProviderConfig = serde_json::from_str(&row.config_json)
        .with_context(|| format!("provider {}: unreadable config_json", row.name))?;
    let headers: Vec<(String, String)> = match &config.headers_ciphertext {
        Some(ciphertext) => {
            let bound_to = SecretRow::ProviderHeaders {
                provider: &row.name,
            };
            let json = cipher.decrypt_for(bound_to, ciphertext).with_context(|| {
                format!(
                    "provider {}: cannot decrypt headers (wrong security.secret_key?)",
                    row.name
                )
            })?;
            serde_json::from_str::<BTreeMap<String, String>>(&json)?
                .into_iter()
                .collect()
        }
        None => Vec::new(),
    };
    let mut keys = Vec::new();
    for key in db.list_provider_keys(row.id).await? {
        let bound_to = SecretRow::ProviderKey {
            provider: &row.name,
            key_id: &key.key_id,
        };
        match cipher.decrypt_for(bound_to, &key.secret_ciphertext) {
            Ok(secret) => keys.push(KeySpec {
                id: key.key_id.clone(),
                secret: Arc::from(secret),
                weight: u32::try_from(key.weight).unwrap_or(1).max(1),
                priority: key.priority,
                enabled: key.enabled,
                disabled_reason: key.disabled_reason.clone(),
                max_in_flight: config.max_in_flight_per_key,
            }),
            Err(error) => {
                warn!(log, "seed.key_undecryptable"; "provider" => &row.name, "key_id" => &key.key_id, "error" => %error);
            }
        }
    }
    let spec = ProviderSpec {
        name: row.name.clone(),
        kind: row.kind.clone(),
        base_url: row.base_url.clone().unwrap_or_default(),
        api_version: config.api_version.clone(),
        headers,
        strategy: config
            .strategy
            .as_deref()
            .map(parse_strategy)
            .unwrap_or_default(),
        policy: config
            .retry
            .as_ref()
            .map(RetryPolicy::from)
            .unwrap_or_default(),
    };
    Ok(LoadedProvider {
        spec,
        keys,
        models: config.models,
        weight: config.weight,
    })
}

pub async fn load_prices(db: &Db) -> anyhow::Result<HashMap<String, Price>> {
    Ok(db
        .list_prices()
        .await?
        .into_iter()
        .map(|row| (row.model.clone(), row.price()))
        .collect())
}

pub async fn load_redirects(db: &Db) -> anyhow::Result<HashMap<String, String>> {
    Ok(db
        .list_redirects()
        .await?
        .into_iter()
        .map(|row| (row.from_model, row.to_model))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// The shipped list prices parse, and their cache rates are what the
    /// vendors' invoices say of them: reads cheaper than the input price,
    /// writes (Anthropic's) dearer.
    #[test]
    fn list_prices_parse_with_their_cache_rates() -> anyhow::Result<()> {
        let list = list_prices()?;
        let price = |model: &str| {
            list.prices
                .iter()
                .find(|price| price.model == model)
                .map(PriceSettings::price)
        };
        let sonnet = price("claude-sonnet-4-5").context("sonnet")?;
        assert_eq!(sonnet.cache_read_per_mtok_micros, Some(300_000));
        assert_eq!(sonnet.cache_write_per_mtok_micros, Some(3_750_000));
        assert_eq!(sonnet.reasoning_per_mtok_micros, None);
        for price in list.prices.iter().map(PriceSettings::price) {
            if let Some(read) = price.cache_read_per_mtok_micros {
                assert!(read < price.input_per_mtok_micros, "{price:?}");
            }
            if let Some(write) = price.cache_write_per_mtok_micros {
                assert!(write > price.input_per_mtok_micros, "{price:?}");
            }
        }
        Ok(())
    }
}
