//! Validation shared by the admin bodies: money in USD, multipliers, paging,
//! and the "absent / null / value" distinction of PATCH bodies.
//!
//! Money is stored as integer nano-USD and multipliers as parts per million;
//! the API takes and shows USD and plain factors as JSON numbers (and the
//! integers beside them, so nothing is lost to floating point).

use crate::error::ApiError;
use crate::tokens::PPM;
use serde::{Deserialize, Deserializer};

const NANOS_PER_USD: f64 = 1e9;
/// The largest amount of money taken: ~$9.2 billion fits i64 nano-USD with
/// room for sums.
const MAX_USD: f64 = 1e9;
/// The largest price multiplier taken (x1000).
const MAX_MULTIPLIER: f64 = 1000.0;

/// For `Option<Option<T>>` fields with `#[serde(default)]`: absent is
/// `None`, `null` is `Some(None)`, a value is `Some(Some(value))`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Reads a JSON body that must be an object (serde would also take an
/// array for a struct whose fields are all optional).
pub async fn read_object<T: serde::de::DeserializeOwned>(
    request: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<T, ApiError> {
    let value: serde_json::Value =
        crate::http::body::read_json(request, payload, super::ADMIN_BODY_LIMIT).await?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "Invalid JSON body: expected an object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|error| ApiError::bad_request(format!("Invalid JSON body: {error}")))
}

/// A PATCH field that may be absent but not `null` (it has no "unset").
pub fn not_null<T>(param: &'static str, field: Option<Option<T>>) -> Result<Option<T>, ApiError> {
    match field {
        Some(None) => Err(ApiError::bad_param(
            param,
            format!("`{param}` cannot be null"),
        )),
        Some(Some(value)) => Ok(Some(value)),
        None => Ok(None),
    }
}

/// nano-USD as USD, for display.
pub fn usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

/// A non-negative amount in USD as nano-USD (rounded to the nearest).
pub fn usd_to_nanos(param: &'static str, amount: f64) -> Result<i64, ApiError> {
    if !amount.is_finite() || !(0.0..=MAX_USD).contains(&amount) {
        return Err(ApiError::bad_param(
            param,
            format!("`{param}` must be a number of USD from 0 to {MAX_USD}"),
        ));
    }
    Ok((amount * NANOS_PER_USD).round() as i64)
}

/// A price multiplier (`1.2` = 20 % on top) as parts per million.
pub fn multiplier_to_ppm(param: &'static str, factor: f64) -> Result<i64, ApiError> {
    if !factor.is_finite() || !(0.0..=MAX_MULTIPLIER).contains(&factor) {
        return Err(ApiError::bad_param(
            param,
            format!("`{param}` must be a factor from 0 to {MAX_MULTIPLIER} (1 = list price)"),
        ));
    }
    Ok((factor * PPM as f64).round() as i64)
}

/// Parts per million as a factor, for display.
pub fn ppm_to_multiplier(ppm: i64) -> f64 {
    ppm as f64 / PPM as f64
}

/// A name: trimmed, 1 to 200 characters.
pub fn name(param: &'static str, raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(ApiError::bad_param(
            param,
            format!("`{param}` must be 1 to 200 characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// `limit` 1..=1000 (default 100) and `offset` >= 0.
pub fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let (limit, offset) = (limit.unwrap_or(100), offset.unwrap_or(0));
    if !(1..=1000).contains(&limit) || offset < 0 {
        return Err(ApiError::bad_request(
            "`limit` must be 1..=1000 and `offset` non-negative",
        ));
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_multipliers_convert_exactly() -> Result<(), ApiError> {
        assert_eq!(usd_to_nanos("x", 0.0)?, 0);
        assert_eq!(usd_to_nanos("x", 12.5)?, 12_500_000_000);
        assert_eq!(usd_to_nanos("x", 0.000_000_001)?, 1);
        assert_eq!(usd_to_nanos("x", 0.1)?, 100_000_000);
        assert!(usd_to_nanos("x", -0.01).is_err());
        assert!(usd_to_nanos("x", f64::NAN).is_err());
        assert!(usd_to_nanos("x", 1e12).is_err());
        assert_eq!(multiplier_to_ppm("m", 1.2)?, 1_200_000);
        assert_eq!(multiplier_to_ppm("m", 0.0)?, 0);
        assert!(multiplier_to_ppm("m", -1.0).is_err());
        assert!((ppm_to_multiplier(1_200_000) - 1.2).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn names_and_paging() {
        assert_eq!(name("n", "  a b ").ok().as_deref(), Some("a b"));
        assert!(name("n", "   ").is_err());
        assert!(name("n", &"x".repeat(201)).is_err());
        assert_eq!(paging(None, None).ok(), Some((100, 0)));
        assert!(paging(Some(0), None).is_err());
        assert!(paging(Some(1001), None).is_err());
        assert!(paging(None, Some(-1)).is_err());
    }
}
