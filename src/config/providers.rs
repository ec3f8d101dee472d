//! `[[providers]]`, `[redirects]` and `[[prices]]`: the upstreams, their keys,
//! and how model names map onto them. Declared here, seeded into the database
//! at start (the database is the source of truth once running).

use super::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_actors::{KeyStrategy, RetryPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Unique name; clients pin it with `name/model`.
    pub name: String,
    pub kind: ProviderKind,
    /// API root including the version segment, e.g. `https://api.openai.com/v1`,
    /// `https://api.anthropic.com/v1`,
    /// `https://generativelanguage.googleapis.com/v1beta`,
    /// `https://open.bigmodel.cn/api/paas/v4`, or for Azure the resource root
    /// `https://NAME.openai.azure.com` (deployments are model names).
    /// Not used (may be left out) by `echo`, which answers in-process.
    #[serde(default)]
    pub base_url: String,
    /// `azure-openai`: the `api-version` query parameter (default
    /// `2024-10-21`); `anthropic`: the `anthropic-version` header (default
    /// `2023-06-01`). Ignored by the other kinds.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The key pool. A plain string, or a table `{ key, id, weight, priority }`.
    #[serde(default)]
    pub keys: Vec<KeySettings>,
    /// Bare model names this provider serves. Any model can still be reached
    /// through `name/model`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra headers sent with every upstream request (OpenRouter's
    /// `HTTP-Referer`, a gateway header...). Values may use `${VAR}`.
    /// Also accepted as `inject_headers`.
    #[serde(default, alias = "inject_headers")]
    pub headers: BTreeMap<String, Secret>,
    /// How a key is picked from the pool.
    #[serde(default)]
    pub strategy: KeyStrategy,
    #[serde(default)]
    pub retry: RetrySettings,
    /// Share of traffic under a model's `weighted` strategy.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Requests each key may have in flight at once (0: no limit). When every
    /// key is at its limit the request gets 503.
    #[serde(default)]
    pub max_in_flight_per_key: u32,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

/// A provider setting that [`ProviderSettings::validate`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInvalid {
    /// The field, relative to the provider (`base_url`, `keys[1].id`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> ProviderInvalid {
    ProviderInvalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `name` may name a provider (it is also the `name/model` prefix).
pub fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl ProviderSettings {
    /// Checks one provider on its own: settings validation and the admin
    /// API share it. That names are unique is the caller's check.
    pub fn validate(&self) -> Result<(), ProviderInvalid> {
        if !valid_provider_name(&self.name) {
            return Err(refuse(
                "name",
                format!(
                    "{:?} must be non-empty and use only letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        let needs_url = self.kind != ProviderKind::Echo || !self.base_url.is_empty();
        if needs_url
            && !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://"))
        {
            return Err(refuse(
                "base_url",
                format!("{:?} must start with http:// or https://", self.base_url),
            ));
        }
        for (name, value) in &self.headers {
            if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(refuse(
                    format!("headers.{name}"),
                    "is not a valid HTTP header name",
                ));
            }
            if actix_web::http::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(refuse(
                    format!("headers.{name}"),
                    "must be a valid HTTP header value (visible ASCII, no line breaks)",
                ));
            }
        }
        let mut key_ids = std::collections::HashSet::new();
        for (index, key) in self.keys.iter().enumerate() {
            if !key_ids.insert(key.id(index)) {
                return Err(refuse(
                    format!("keys[{index}].id"),
                    "is used twice in this provider",
                ));
            }
            if key.weight() == 0 {
                return Err(refuse(
                    format!("keys[{index}].weight"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// api.openai.com.
    Openai,
    /// Any service speaking OpenAI's API at another base URL (DeepSeek,
    /// OpenRouter, vLLM, Ollama...).
    OpenaiCompatible,
    /// Azure OpenAI: deployment URLs, the `api-key` header, `api-version`.
    AzureOpenai,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google's Gemini API (`generateContent`, `streamGenerateContent`).
    Gemini,
    /// Zhipu GLM, its v4 chat API (OpenAI-shaped at its own base URL).
    Zhipu,
    /// The offline demo upstream: answers chat completions in-process by
    /// echoing the last user message (`providers::echo`). Never present
    /// unless configured.
    Echo,
}

impl ProviderKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ProviderKind; 7] = [
        Self::Openai,
        Self::OpenaiCompatible,
        Self::AzureOpenai,
        Self::Anthropic,
        Self::Gemini,
        Self::Zhipu,
        Self::Echo,
    ];

    /// "openai, openai-compatible, ...": what an unknown kind is told.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::OpenaiCompatible => "openai-compatible",
            Self::AzureOpenai => "azure-openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Zhipu => "zhipu",
            Self::Echo => "echo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// By name; an unknown one is refused with the list of kinds (serde's
/// derived message, through the config crate, named none of them).
impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown provider kind {name:?}; the kinds are {}",
                Self::names()
            ))
        })
    }
}

#[derive(Debug, Clone)]
pub enum KeySettings {
    Plain(Secret),
    Detailed {
        key: Secret,
        /// Stable label shown to admins and in logs; defaults to `key-N`.
        id: Option<String>,
        weight: u32,
        /// Lower is preferred by `first-available`.
        priority: i32,
    },
}

/// A key as written: its `${VAR}` references are expanded only once its
/// shape is known, so that an unset variable is named in the error rather
/// than hidden behind "data did not match any variant" of an untagged enum.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a key: a string, or a table { key, id, weight, priority }"
)]
enum KeyAsWritten {
    Plain(String),
    Detailed {
        key: String,
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_weight")]
        weight: u32,
        #[serde(default)]
        priority: i32,
    },
}

impl<'de> Deserialize<'de> for KeySettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expand = |raw: &str| {
            super::secret::expand_env(raw, |name| std::env::var(name).ok())
                .map(Secret::new)
                .map_err(serde::de::Error::custom)
        };
        Ok(match KeyAsWritten::deserialize(deserializer)? {
            KeyAsWritten::Plain(key) => Self::Plain(expand(&key)?),
            KeyAsWritten::Detailed {
                key,
                id,
                weight,
                priority,
            } => Self::Detailed {
                key: expand(&key)?,
                id,
                weight,
                priority,
            },
        })
    }
}

fn default_weight() -> u32 {
    1
}

impl KeySettings {
    pub fn secret(&self) -> &Secret {
        match self {
            Self::Plain(key) | Self::Detailed { key, .. } => key,
        }
    }

    pub fn id(&self, index: usize) -> String {
        match self {
            Self::Detailed { id: Some(id), .. } => id.clone(),
            _ => format!("key-{}", index + 1),
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Self::Plain(_) => 1,
            Self::Detailed { weight, .. } => *weight,
        }
    }

    pub fn priority(&self) -> i32 {
        match self {
            Self::Plain(_) => 0,
            Self::Detailed { priority, .. } => *priority,
        }
    }
}

/// Per-provider retry policy; see `switchyard_actors::RetryPolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Upstream attempts per client request, the first included; 0: each
    /// usable key of every candidate provider once.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Cooldown for a key answering 429 without a `Retry-After` header.
    #[serde(with = "humantime_serde")]
    pub rate_limit_cooldown: Duration,
    /// Cooldown for a key after a 5xx, timeout or reset.
    #[serde(with = "humantime_serde")]
    pub error_cooldown: Duration,
    /// Consecutive 5xx/timeout/reset failures that open a key's circuit
    /// (cooldown, then a single half-open probe).
    pub failure_threshold: u32,
    /// Limit for one attempt to answer (head, and first content for
    /// streams); unset: `upstream.first_byte_timeout`.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        let policy = RetryPolicy::default();
        Self {
            max_attempts: policy.max_attempts,
            backoff_base: policy.backoff_base,
            backoff_max: policy.backoff_max,
            rate_limit_cooldown: policy.rate_limit_cooldown,
            error_cooldown: policy.error_cooldown,
            failure_threshold: policy.failure_threshold,
            attempt_timeout: policy.attempt_timeout,
        }
    }
}

impl RetrySettings {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            rate_limit_cooldown: self.rate_limit_cooldown,
            error_cooldown: self.error_cooldown,
            failure_threshold: self.failure_threshold,
            attempt_timeout: self.attempt_timeout,
        }
    }
}

/// `[[prices]]`: list prices in USD per million tokens and per media unit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSettings {
    pub model: String,
    /// Absent: 0 (a media model priced by its units alone, tts-1).
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Prompt tokens read from the provider's cache; absent: `input_per_mtok`.
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    /// Prompt tokens written to the cache; absent: `input_per_mtok`.
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    /// Completion tokens spent reasoning; absent: `output_per_mtok`.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// Media units, each on top of the tokens (absent: 0, not charged):
    /// USD per image generated or edited.
    #[serde(default)]
    pub per_image: f64,
    /// USD per million characters of speech input.
    #[serde(default)]
    pub per_mchar: f64,
    /// USD per second of audio transcribed or translated ($0.006 a minute
    /// is 0.0001).
    #[serde(default)]
    pub per_audio_second: f64,
    /// USD per rerank search unit.
    #[serde(default)]
    pub per_search: f64,
}

impl PriceSettings {
    /// Micro-USD per million tokens, the unit stored in `model_prices`.
    pub fn micros(usd: f64) -> i64 {
        (usd * 1_000_000.0).round() as i64
    }

    /// The token and media unit rates in micro-USD (no per-call price:
    /// settings have none).
    pub fn price(&self) -> crate::metering::Price {
        crate::metering::Price {
            input_per_mtok_micros: Self::micros(self.input_per_mtok),
            output_per_mtok_micros: Self::micros(self.output_per_mtok),
            per_call_micros: 0,
            cache_read_per_mtok_micros: self.cache_read_per_mtok.map(Self::micros),
            cache_write_per_mtok_micros: self.cache_write_per_mtok.map(Self::micros),
            reasoning_per_mtok_micros: self.reasoning_per_mtok.map(Self::micros),
            per_image_micros: Self::micros(self.per_image),
            per_mchar_micros: Self::micros(self.per_mchar),
            per_audio_second_micros: Self::micros(self.per_audio_second),
            per_search_micros: Self::micros(self.per_search),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Provider settings are printed with `{:?}` (start-up errors, test
    /// failures): neither a key nor a header value may appear.
    #[test]
    fn debug_output_never_shows_keys_or_header_values() -> Result<(), serde_json::Error> {
        let provider: ProviderSettings = serde_json::from_value(serde_json::json!({
            "name": "openrouter",
            "kind": "openai",
            "base_url": "https://openrouter.ai/api/v1",
            "keys": ["sk-or-plain-0123456789abcdef", { "key": "sk-or-table-fedcba9876543210", "id": "k2" }],
            "headers": { "x-upstream-auth": "Bearer hdr-secret-00112233" },
        }))?;
        let printed = format!("{provider:?} {provider:#?}");
        for secret in [
            "sk-or-plain-0123456789abcdef",
            "sk-or-table-fedcba9876543210",
            "hdr-secret-00112233",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("x-upstream-auth"), "{printed}");
        Ok(())
    }

    #[test]
    fn media_list_prices_convert_to_micros() -> Result<(), serde_json::Error> {
        let price: PriceSettings = serde_json::from_value(serde_json::json!({
            "model": "whisper-1", "per_audio_second": 0.0001,
        }))?;
        let price = price.price();
        assert_eq!(price.per_audio_second_micros, 100);
        assert_eq!(
            (price.input_per_mtok_micros, price.output_per_mtok_micros),
            (0, 0)
        );
        let price: PriceSettings = serde_json::from_value(serde_json::json!({
            "model": "m", "input_per_mtok": 5, "output_per_mtok": 40,
            "per_image": 0.04, "per_mchar": 15, "per_search": 0.002,
        }))?;
        let price = price.price();
        assert_eq!(
            (
                price.input_per_mtok_micros,
                price.output_per_mtok_micros,
                price.per_image_micros,
                price.per_mchar_micros,
                price.per_search_micros,
                price.per_audio_second_micros,
            ),
            (5_000_000, 40_000_000, 40_000, 15_000_000, 2_000, 0)
        );
        // Misspelt: refused, never a silently free unit.
        assert!(
            serde_json::from_value::<PriceSettings>(
                serde_json::json!({ "model": "m", "per_imag": 1 })
            )
            .is_err()
        );
        Ok(())
    }
}
