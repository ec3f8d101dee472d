//! Provider adapters: how the gateway's request becomes a provider's, and
//! how the provider's answer is read back. One module per provider kind; the
//! handlers only ever call the functions re-exported here.
//!
//! A boundary: these are pure functions of bytes and JSON, so nothing here
//! imports the web framework, the HTTP client, the database or the server's
//! modules (`error`, `http`, `db`, ...). Failures are [`RequestError`] and
//! [`TranslateError`], plain data that `crate::error` converts into the
//! client's answer; statuses and headers come in as plain values. It would
//! be a crate of its own but for the fixed top-level layout (`src`,
//! `actors`, `tests`, ...); `tests/layout.rs` holds the line instead.

pub mod anthropic;
pub mod azure;
pub mod checks;
pub mod echo;
pub mod error;
pub mod estimate;
pub mod exchange;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod sse;
pub mod translate;
pub mod wire_error;
pub mod zhipu;

pub use error::RequestError;
pub use translate::TranslateError;

use crate::config::ProviderKind;
use std::time::{Duration, SystemTime};
use switchyard_actors::{Failure, ProviderSpec};

/// Headers never copied between client and upstream in either direction:
/// hop-by-hop headers (RFC 9110 §7.6.1) and credentials.
pub const STRIPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-gw-token",
    "cookie",
    "set-cookie",
];

/// The wire format a provider kind speaks. The gateway's own format is
/// OpenAI's; the other two are translated (see [`translate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// The media front doors (issue 15, item 3): requests passed through in
/// OpenAI's shape (rerank: Cohere's, which Jina, vLLM and TEI share) to
/// providers whose adapter has the endpoint, metered in their own units
/// (`openai::Usage::images` and the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    ImageGenerations,
    ImageEdits,
    AudioSpeech,
    AudioTranscriptions,
    AudioTranslations,
    Rerank,
}

impl Media {
    /// The client-facing route, as recorded on the usage row.
    pub fn route(self) -> &'static str {
        match self {
            Self::ImageGenerations => "/v1/images/generations",
            Self::ImageEdits => "/v1/images/edits",
            Self::AudioSpeech => "/v1/audio/speech",
            Self::AudioTranscriptions => "/v1/audio/transcriptions",
            Self::AudioTranslations => "/v1/audio/translations",
            Self::Rerank => "/v1/rerank",
        }
    }

    /// The path below an OpenAI-style base URL (`.../v1`).
    pub fn path(self) -> &'static str {
        self.route().trim_start_matches("/v1/")
    }
}

/// What the gateway needs to know to talk to one provider kind: where each
/// endpoint lives, how a key is presented and how its model list reads.
/// One implementation per kind module; handlers only go through this.
pub trait Adapter: Sync {
    fn wire(&self) -> Wire;
    /// Credential (and version) headers for one key.
    fn auth_headers(&self, spec: &ProviderSpec, secret: &str) -> Vec<(&'static str, String)>;
    /// Chat endpoint below the base URL, for the upstream model name.
    fn chat_path(&self, spec: &ProviderSpec, model: &str, stream: bool) -> String;
    /// Legacy text completions; `None` when the provider has none.
    fn completions_path(&self, _spec: &ProviderSpec, _model: &str) -> Option<String> {
        None
    }
    /// Embeddings (OpenAI's request shape); `None` when unsupported.
    fn embeddings_path(&self, _spec: &ProviderSpec, _model: &str) -> Option<String> {
        None
    }
    /// An images, audio or rerank endpoint (OpenAI's request shapes;
    /// rerank Cohere's and Jina's); `None` when the provider has none.
    fn media_path(&self, _spec: &ProviderSpec, _model: &str, _media: Media) -> Option<String> {
        None
    }
    /// The model list endpoint; `None` when the provider cannot list models.
    fn models_path(&self, _spec: &ProviderSpec) -> Option<String> {
        Some("models".to_owned())
    }
    /// A cheap authenticated GET that tells whether a key works again
    /// (half-open probes).
    fn probe_path(&self, spec: &ProviderSpec) -> String {
        self.models_path(spec)
            .unwrap_or_else(|| "models".to_owned())
    }
    /// Model ids from the model list answer.
    fn parse_models(&self, body: &serde_json::Value) -> Vec<String> {
        openai::model_ids(body)
    }
}

/// The adapter for a provider kind.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => &openai::OpenAiAdapter,
        ProviderKind::AzureOpenai => &azure::AzureAdapter,
        ProviderKind::Anthropic => &anthropic::AnthropicAdapter,
        ProviderKind::Gemini => &gemini::GeminiAdapter,
        ProviderKind::Zhipu => &zhipu::ZhipuAdapter,
        ProviderKind::Echo => &echo::EchoAdapter,
    }
}

/// The provider kind behind a spec (validated at start).
pub fn kind_of(spec: &ProviderSpec) -> ProviderKind {
    ProviderKind::parse(&spec.kind).unwrap_or(ProviderKind::OpenaiCompatible)
}

/// The adapter behind a spec.
pub fn adapter_of(spec: &ProviderSpec) -> &'static dyn Adapter {
    adapter(kind_of(spec))
}

/// Full URL for an API path below the provider's base URL.
pub fn endpoint_url(spec: &ProviderSpec, path: &str) -> String {
    let base = spec.base_url.trim_end_matches('/');
    format!("{base}/{}", path.trim_start_matches('/'))
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A model or deployment name made safe for one URL path segment.
pub fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// The OpenAI-style bearer credential header.
pub fn bearer(secret: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {secret}"))
}

/// How a non-2xx upstream status reflects on the key. `None` for success.
/// `header` looks up one of the answer's headers by its lowercase name.
pub fn classify_status<'h>(
    status: u16,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    Some(match status {
        429 => Failure::RateLimited {
            retry_after: retry_after(header, SystemTime::now()),
        },
        401 | 403 => Failure::Unauthorized,
        408 => Failure::Timeout,
        s if s >= 500 => Failure::ServerError,
        _ => Failure::ClientError,
    })
}

/// How long an upstream asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else OpenAI's `x-ratelimit-reset-requests`/`-tokens` (`1s`, `6m0s`,
/// `20ms`), the longer of the two. `header` looks up one of the answer's
/// headers by its lowercase name.
pub fn retry_after<'h>(
    header: impl Fn(&str) -> Option<&'h str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(value) = header("retry-after") {
        if let Ok(seconds) = value.trim().parse::<f64>()
            && seconds.is_finite()
            && seconds >= 0.0
        {
            return Some(Duration::from_secs_f64(seconds.min(86_400.0)));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(date.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|name| header(name).and_then(parse_go_duration))
        .max()
}

/// Parses durations such as `1s`, `6m0s`, `1h2m3.5s`, `250ms`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut seen_unit = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit_seconds = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit_seconds;
        seen_unit = true;
    }
    if !number.is_empty() || !seen_unit {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// Property-test input for the stream reads: JSON objects written as text,
/// so that a key may come twice (a `Value` cannot hold that).
#[cfg(test)]
pub(crate) mod json_text {
    use proptest::prelude::*;

    /// An object of up to four members, keys from `keys`, values from
    /// `values` (each already JSON text).
    pub fn object(
        keys: &'static [&'static str],
        values: impl Strategy<Value = String>,
    ) -> impl Strategy<Value = String> {
        proptest::collection::vec((proptest::sample::select(keys), values), 0..5).prop_map(
            |members| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(key, value)| format!("\"{key}\":{value}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header lookup over fixed pairs, as a call site's closure over the
    /// upstream answer's header map would be.
    fn headers<'h>(pairs: &'h [(&'h str, &'h str)]) -> impl Fn(&str) -> Option<&'h str> {
        |name| {
            pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| *value)
        }
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_openai_reset_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                headers(&[
                    ("x-ratelimit-reset-requests", "6m0s"),
                    ("x-ratelimit-reset-tokens", "250ms")
                ]),
                now
            ),
            Some(Duration::from_secs(360))
        );
        assert_eq!(retry_after(headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(headers(&[]), now), None);
    }

    #[test]
    fn statuses_map_to_key_health() {
        assert_eq!(classify_status(200, headers(&[])), None);
        assert_eq!(classify_status(204, headers(&[])), None);
        assert_eq!(
            classify_status(401, headers(&[])),
            Some(Failure::Unauthorized)
        );
        assert_eq!(
            classify_status(502, headers(&[])),
            Some(Failure::ServerError)
        );
        assert_eq!(
            classify_status(400, headers(&[])),
            Some(Failure::ClientError)
        );
        assert_eq!(
            classify_status(429, headers(&[("retry-after", "2")])),
            Some(Failure::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            })
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("12"), None);
        assert_eq!(parse_go_duration("x"), None);
    }
}
