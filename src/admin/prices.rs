//! Model prices (USD per million input and output tokens, optionally
//! prompt-cache reads, writes and reasoning tokens at their own rates) and
//! the models served without one. Every change reloads the price table the meter reads,
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
    let input = micros("input_per_mtok", body.input_per_mtok)?;
    let output = micros("output_per_mtok", body.output_per_mtok)?;
    let per_call = per_call_micros(body.per_call)?;
    let price = Price {
        input_per_mtok_micros: input,
        output_per_mtok_micros: output,
        per_call_micros: per_call,
        cache_read_per_mtok_micros: optional_micros(
            "cache_read_per_mtok",
            body.cache_read_per_mtok,
        )?,
        cache_write_per_mtok_micros: optional_micros(
            "cache_write_per_mtok",
            body.cache_write_per_mtok,
        )?,
        reasoning_per_mtok_micros: optional_micros("reasoning_per_mtok", body.reasoning_per_mtok)?,
        ..Price::default()
    };
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
