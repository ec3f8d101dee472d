//! Model prices (USD per million input and output tokens, optionally
//! prompt-cache reads, writes and reasoning tokens at their own rates, and
//! the media units: USD per image, per million characters of speech, per
//! second of audio, per rerank search unit) and the models served without
//! one. Every change reloads the price table the meter reads,
//! so the next request is costed at the new price.

use super::ADMIN_BODY_LIMIT;
use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::prices::ModelPrice;
use crate::error::ApiError;
use crate::http::body::read_json;
use crate::metering::Price;
use actix_web::web::{Data, Path, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

/// The highest price taken: $100,000 per million tokens.
const MAX_PRICE_PER_MTOK: f64 = 100_000.0;
const DAY_MS: i64 = 86_400_000;

/// `PUT /admin/model-prices/{model}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPrice {
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
    /// USD per successful call, on top of the tokens (default 0): the price
    /// of `/proxy` endpoints without token usage, set on the pseudo-model
    /// `proxy:{provider}:{path}` (or `proxy:{provider}:*`).
    #[serde(default)]
    pub per_call: f64,
    /// USD per million prompt tokens read from the provider's prompt cache;
    /// absent or null: `input_per_mtok`.
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    /// USD per million prompt tokens written to the cache; absent or null:
    /// `input_per_mtok`.
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    /// USD per million completion tokens spent reasoning; absent or null:
    /// `output_per_mtok`.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// Media units, each on top of the tokens (default 0: not charged).
    /// USD per image generated or edited.
    #[serde(default)]
    pub per_image: f64,
    /// USD per million characters of speech input (tts-1: 15).
    #[serde(default)]
    pub per_mchar: f64,
    /// USD per second of audio transcribed or translated (whisper-1's
    /// $0.006 a minute is 0.0001).
    #[serde(default)]
    pub per_audio_second: f64,
    /// USD per rerank search unit (Cohere's $2 per 1,000 is 0.002).
    #[serde(default)]
    pub per_search: f64,
}

/// The highest price per media unit taken (an image, a second of audio, a
/// search unit): $1,000, like a call.
const MAX_PRICE_PER_UNIT: f64 = 1_000.0;

/// A media unit's rate in micro-USD: `usd` per `unit`, from 0 to `max`.
fn unit_micros(param: &'static str, unit: &str, max: f64, usd: f64) -> Result<i64, ApiError> {
    if !usd.is_finite() || !(0.0..=max).contains(&usd) {
        return Err(ApiError::bad_param(
            param,
            format!("`{param}` must be USD per {unit}, from 0 to {max}"),
        ));
    }
    Ok(crate::config::PriceSettings::micros(usd))
}

/// The body's price in micro-USD, or a 400 naming the first bad field.
fn price_of(body: &PutPrice) -> Result<Price, ApiError> {
    Ok(Price {
        input_per_mtok_micros: micros("input_per_mtok", body.input_per_mtok)?,
        output_per_mtok_micros: micros("output_per_mtok", body.output_per_mtok)?,
        per_call_micros: per_call_micros(body.per_call)?,
        cache_read_per_mtok_micros: optional_micros(
            "cache_read_per_mtok",
            body.cache_read_per_mtok,
        )?,
        cache_write_per_mtok_micros: optional_micros(
            "cache_write_per_mtok",
            body.cache_write_per_mtok,
        )?,
        reasoning_per_mtok_micros: optional_micros("reasoning_per_mtok", body.reasoning_per_mtok)?,
        per_image_micros: unit_micros("per_image", "image", MAX_PRICE_PER_UNIT, body.per_image)?,
        per_mchar_micros: unit_micros(
            "per_mchar",
            "million characters",
            MAX_PRICE_PER_MTOK,
            body.per_mchar,
        )?,
        per_audio_second_micros: unit_micros(
            "per_audio_second",
            "second of audio",
            MAX_PRICE_PER_UNIT,
            body.per_audio_second,
        )?,
        per_search_micros: unit_micros(
            "per_search",
            "search unit",
            MAX_PRICE_PER_UNIT,
            body.per_search,
        )?,
    })
}

/// The highest per-call price taken: $1,000.
const MAX_PRICE_PER_CALL: f64 = 1_000.0;

/// `GET /admin/unpriced-models` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpriced {
    /// How far back to look in the request logs (default 30 days).
    #[serde(default)]
    pub days: Option<i64>,
}

fn micros(param: &'static str, usd: f64) -> Result<i64, ApiError> {
    if !usd.is_finite() || !(0.0..=MAX_PRICE_PER_MTOK).contains(&usd) {
        return Err(ApiError::bad_param(
            param,
            format!("`{param}` must be USD per million tokens, from 0 to {MAX_PRICE_PER_MTOK}"),
        ));
    }
    Ok(crate::config::PriceSettings::micros(usd))
}

fn per_call_micros(usd: f64) -> Result<i64, ApiError> {
    if !usd.is_finite() || !(0.0..=MAX_PRICE_PER_CALL).contains(&usd) {
        return Err(ApiError::bad_param(
            "per_call",
            format!("`per_call` must be USD per call, from 0 to {MAX_PRICE_PER_CALL}"),
        ));
    }
    Ok(crate::config::PriceSettings::micros(usd))
}

/// An optional part rate: null when it is charged at its total's rate.
fn optional_micros(param: &'static str, usd: Option<f64>) -> Result<Option<i64>, ApiError> {
    usd.map(|usd| micros(param, usd)).transpose()
}

fn price_json(row: &ModelPrice) -> Value {
    let usd = |micros: Option<i64>| micros.map(|micros| micros as f64 / 1e6);
    json!({
        "model": row.model,
        "input_per_mtok": row.input_per_mtok_micros as f64 / 1e6,
        "output_per_mtok": row.output_per_mtok_micros as f64 / 1e6,
        "input_per_mtok_micros": row.input_per_mtok_micros,
        "output_per_mtok_micros": row.output_per_mtok_micros,
        "per_call": row.per_call_micros as f64 / 1e6,
        "per_call_micros": row.per_call_micros,
        "cache_read_per_mtok": usd(row.cache_read_per_mtok_micros),
        "cache_read_per_mtok_micros": row.cache_read_per_mtok_micros,
        "cache_write_per_mtok": usd(row.cache_write_per_mtok_micros),
        "cache_write_per_mtok_micros": row.cache_write_per_mtok_micros,
        "reasoning_per_mtok": usd(row.reasoning_per_mtok_micros),
        "reasoning_per_mtok_micros": row.reasoning_per_mtok_micros,
        "per_image": row.per_image_micros as f64 / 1e6,
        "per_image_micros": row.per_image_micros,
        "per_mchar": row.per_mchar_micros as f64 / 1e6,
        "per_mchar_micros": row.per_mchar_micros,
        "per_audio_second": row.per_audio_second_micros as f64 / 1e6,
        "per_audio_second_micros": row.per_audio_second_micros,
        "per_search": row.per_search_micros as f64 / 1e6,
        "per_search_micros": row.per_search_micros,
        "updated_at": row.updated_at / 1000,
    })
}

/// The database's prices become the meter's.
async fn reload(state: &AdminState) -> Result<(), ApiError> {
    let prices = crate::config_store::load_prices(&state.db)
        .await
        .map_err(|error| {
            slog::error!(state.log, "admin.prices_reload_failed"; "error" => %error);
            ApiError::Internal
        })?;
    state.prices.replace(prices);
    Ok(())
}

/// `GET /admin/model-prices`.
pub async fn list(_: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let rows = state.db.list_prices().await?;
    let data: Vec<Value> = rows.iter().map(price_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `PUT /admin/model-prices/{model}`: creates or replaces.
pub async fn put(
    admin: AdminAuth,
    state: Data<AdminState>,
    model: Path<String>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let model = model.into_inner();
    if model.trim().is_empty() || model.len() > 200 || model.trim() != model {
        return Err(ApiError::bad_param(
            "model",
            "the model name must be 1 to 200 characters without surrounding spaces",
        ));
    }
    let body: PutPrice = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let price = price_of(&body)?;
    let (input, output, per_call) = (
        price.input_per_mtok_micros,
        price.output_per_mtok_micros,
        price.per_call_micros,
    );
    let before = state
        .db
        .list_prices()
        .await?
        .iter()
        .find(|price| price.model == model)
        .map(price_json);
    let row = state.db.upsert_price_with_call(&model, &price).await?;
    reload(&state).await?;
    slog::info!(state.log, "admin.price_set"; "model" => &model, "input_per_mtok_micros" => input,
        "output_per_mtok_micros" => output, "per_call_micros" => per_call, "by" => &admin.actor);
    let after = price_json(&row);
    record(
        &state,
        &admin,
        "price.set",
        &format!("price:{model}"),
        before,
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(after))
}

/// `DELETE /admin/model-prices/{model}`: the model is unpriced from the
/// next request on.
pub async fn delete(
    admin: AdminAuth,
    state: Data<AdminState>,
    model: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = model.into_inner();
    let before = state
        .db
        .list_prices()
        .await?
        .iter()
        .find(|price| price.model == model)
        .map(price_json);
    if !state.db.delete_price(&model).await? {
        return Err(ApiError::NotFound(format!("No price for `{model}`")));
    }
    reload(&state).await?;
    slog::info!(state.log, "admin.price_deleted"; "model" => &model, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "price.delete",
        &format!("price:{model}"),
        before,
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /admin/unpriced-models?days=30`: models requests were served for
/// without a price (and that still have none), with how many requests and
/// when the latest was.
pub async fn unpriced(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<Unpriced>,
) -> Result<HttpResponse, ApiError> {
    let days = query.days.unwrap_or(30);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::bad_param("days", "`days` must be 1 to 3650"));
    }
    let since = state.clock.now_ms().saturating_sub(days * DAY_MS);
    let rows = state.db.unpriced_models(since).await?;
    let data: Vec<Value> = rows
        .iter()
        .filter(|row| !state.prices.contains(&row.model))
        .map(|row| {
            json!({
                "model": row.model,
                "requests": row.requests,
                "last_seen_at": row.last_seen_at / 1000,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: Value) -> PutPrice {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn media_rates_are_taken_in_usd_and_stored_in_micros() {
        let price = price_of(&body(json!({
            "input_per_mtok": 5, "output_per_mtok": 40,
            "per_image": 0.04, "per_mchar": 15, "per_audio_second": 0.0001,
            "per_search": 0.002,
        })))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(price.input_per_mtok_micros, 5_000_000);
        assert_eq!(price.output_per_mtok_micros, 40_000_000);
        assert_eq!(price.per_image_micros, 40_000);
        assert_eq!(price.per_mchar_micros, 15_000_000);
        assert_eq!(price.per_audio_second_micros, 100);
        assert_eq!(price.per_search_micros, 2_000);
        // Absent: not charged.
        let plain = price_of(&body(json!({"input_per_mtok": 1, "output_per_mtok": 2})))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (
                plain.per_image_micros,
                plain.per_mchar_micros,
                plain.per_audio_second_micros,
                plain.per_search_micros
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn a_bad_media_rate_is_refused_by_name() {
        for (field, value) in [
            ("per_image", json!(-0.01)),
            ("per_image", json!(1000.5)),
            ("per_mchar", json!(100_001)),
            ("per_audio_second", json!(-1)),
            ("per_search", json!(1e9)),
        ] {
            let mut json = json!({"input_per_mtok": 1, "output_per_mtok": 1});
            json[field] = value.clone();
            let error = price_of(&body(json)).err();
            let text = format!("{error:?}");
            assert!(text.contains(field), "{field}={value}: {text}");
        }
        // A misspelt field is refused by the body's parser, never ignored.
        assert!(
            serde_json::from_value::<PutPrice>(
                json!({"input_per_mtok": 1, "output_per_mtok": 1, "per_images": 1})
            )
            .is_err()
        );
    }

    #[test]
    fn listed_back_in_usd_and_micros() {
        let row = ModelPrice {
            id: 1,
            model: "tts-1".to_owned(),
            input_per_mtok_micros: 0,
            output_per_mtok_micros: 0,
            created_at: 0,
            updated_at: 5_000,
            per_call_micros: 0,
            cache_read_per_mtok_micros: None,
            cache_write_per_mtok_micros: None,
            reasoning_per_mtok_micros: None,
            per_image_micros: 20_000,
            per_mchar_micros: 15_000_000,
            per_audio_second_micros: 100,
            per_search_micros: 2_000,
        };
        let json = price_json(&row);
        assert_eq!(json["per_image"], 0.02);
        assert_eq!(json["per_image_micros"], 20_000);
        assert_eq!(json["per_mchar"], 15.0);
        assert_eq!(json["per_audio_second"], 0.0001);
        assert_eq!(json["per_audio_second_micros"], 100);
        assert_eq!(json["per_search"], 0.002);
        assert_eq!(row.price().per_mchar_micros, 15_000_000);
    }
}
