//! Provider adapters: how the gateway's request becomes a provider's, and
//! how the provider's answer is read back. One module per provider kind; the
//! handlers only ever call the functions re-exported here.

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod sse;
pub mod translate;

use crate::config::ProviderKind;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
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

/// The provider kind behind a spec (validated at start).
pub fn kind_of(spec: &ProviderSpec) -> ProviderKind {
    ProviderKind::parse(&spec.kind).unwrap_or(ProviderKind::OpenaiCompatible)
}

/// Full URL for an API path below the provider's base URL.
pub fn endpoint_url(spec: &ProviderSpec, path: &str) -> String {
    let base = spec.base_url.trim_end_matches('/');
    format!("{base}/{}", path.trim_start_matches('/'))
}

/// The credential header for a provider key (OpenAI-style bearer).
pub fn auth_header(secret: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {secret}"))
}

/// How a non-2xx upstream status reflects on the key. `None` for success.
pub fn classify_status(status: StatusCode, headers: &HeaderMap) -> Option<Failure> {
    if status.is_success() {
        return None;
    }
    Some(match status.as_u16() {
        429 => Failure::RateLimited {
            retry_after: retry_after(headers, SystemTime::now()),
        },
        401 | 403 => Failure::Unauthorized,
        408 => Failure::Timeout,
        s if s >= 500 => Failure::ServerError,
        _ => Failure::ClientError,
    })
}

/// How long an upstream asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else OpenAI's `x-ratelimit-reset-requests`/`-tokens` (`1s`, `6m0s`,
/// `20ms`), the longer of the two.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(value) = header("retry-after") {
        if let Ok(seconds) = value.trim().parse::<f64>()
            && seconds.is_finite()
            && seconds >= 0.0
        {
            return Some(Duration::from_secs_f64(seconds.min(86_400.0)));
        }
        if let Ok(date) = httpdate_parse(value) {
            return Some(date.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|name| header(name).and_then(parse_go_duration))
        .max()
}

fn httpdate_parse(value: &str) -> Result<SystemTime, ()> {
    value
        .parse::<actix_web::http::header::HttpDate>()
        .map(SystemTime::from)
        .map_err(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_openai_reset_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date =
            actix_web::http::header::HttpDate::from(now + Duration::from_secs(30)).to_string();
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static("retry-after"),
            HeaderValue::from_str(&date).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(retry_after(&map, now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-reset-requests", "6m0s"),
                    ("x-ratelimit-reset-tokens", "250ms")
                ]),
                now
            ),
            Some(Duration::from_secs(360))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_map_to_key_health() {
        let none = HeaderMap::new();
        assert_eq!(classify_status(StatusCode::OK, &none), None);
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED, &none),
            Some(Failure::Unauthorized)
        );
        assert_eq!(
            classify_status(StatusCode::BAD_GATEWAY, &none),
            Some(Failure::ServerError)
        );
        assert_eq!(
            classify_status(StatusCode::BAD_REQUEST, &none),
            Some(Failure::ClientError)
        );
        assert_eq!(
            classify_status(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "2")])
            ),
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
