//! Metrics over the request logs of a time range (`from`, `to`: unix
//! seconds or RFC 3339; see [`super::range`]):
//!
//! - `GET /admin/metrics/summary`: requests, successes (2xx) and the success
//!   rate, errors by status class, tokens, cost, latency p50/p90/p99 and
//!   time-to-first-token p50 of the successful requests, unpriced requests.
//!   Default range: the last 24 hours.
//! - `GET /admin/metrics/models-distribution`: the same per requested
//!   model, with each model's share of the requests. Default: 24 hours.
//! - `GET /admin/metrics/timeseries?bucket=hour|day`: requests, errors,
//!   tokens, cost and p50 latency per bucket, every bucket of the range
//!   listed (empty ones as zeros). Buckets are aligned on UTC hours and days;
//!   at most [`MAX_BUCKETS`]. Default: the last 24 hours by hour, the last
//!   30 days by day.
//!
//! Percentiles are nearest-rank, computed by the database
//! ([`crate::db::metrics`]). Requests still in the usage buffer (up to
//! `usage.flush_interval`) are not counted yet.

use super::fields::usd;
use super::range::time_range;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::metrics::{Column, PERCENTILES, Totals};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::{Map, Value, json};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The most buckets one time series answers with.
pub const MAX_BUCKETS: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    pub bucket: Option<String>,
}

fn now_ms(state: &AdminState) -> i64 {
    state.clock.now_ms()
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// `p50`... of `pairs`, `null` where there were no samples.
fn percentiles(names: &[i64], pairs: &[(i64, i64)]) -> Value {
    let mut object = Map::new();
    for p in names {
        let value = pairs
            .iter()
            .find(|(q, _)| q == p)
            .map_or(Value::Null, |(_, value)| json!(value));
        object.insert(format!("p{p}"), value);
    }
    Value::Object(object)
}

fn ratio(part: i64, whole: i64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(part as f64 / whole as f64)
    }
}

/// `GET /admin/metrics/summary`
pub async fn summary(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = time_range(
        query.from.as_deref(),
        query.to.as_deref(),
        now_ms(&state),
        DAY_MS,
    )?;
    let totals: Totals = state.db.metrics_totals(from, to).await?;
    let latency = state
        .db
        .metrics_percentiles(Column::Latency, from, to, &PERCENTILES)
        .await?;
    let ttft = state
        .db
        .metrics_percentiles(Column::TimeToFirstToken, from, to, &[50])
        .await?;
    let other = totals.requests - totals.successes - totals.client_errors - totals.server_errors;
    Ok(HttpResponse::Ok().json(json!({
        "from": seconds(from),
        "to": seconds(to),
        "requests": totals.requests,
        "successes": totals.successes,
        "success_rate": ratio(totals.successes, totals.requests),
        "errors": {
            "4xx": totals.client_errors,
            "5xx": totals.server_errors,
            "other": other,
        },
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.prompt_tokens + totals.completion_tokens,
        "cost_usd": usd(totals.cost_nanos),
        "cost_nanos": totals.cost_nanos,
        "latency_ms": percentiles(&PERCENTILES, &latency),
        "ttft_ms": percentiles(&[50], &ttft),
        "unpriced_requests": totals.unpriced,
    })))
}

/// `GET /admin/metrics/models-distribution`
pub async fn models_distribution(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = time_range(
        query.from.as_deref(),
        query.to.as_deref(),
        now_ms(&state),
        DAY_MS,
    )?;
    let rows = state.db.metrics_by_model(from, to).await?;
    let total: i64 = rows.iter().map(|row| row.requests).sum();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "model": row.model,
                "requests": row.requests,
                "successes": row.successes,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "total_tokens": row.prompt_tokens + row.completion_tokens,
                "cost_usd": usd(row.cost_nanos),
                "cost_nanos": row.cost_nanos,
                "share": ratio(row.requests, total),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": seconds(from),
        "to": seconds(to),
        "requests": total,
        "data": data,
    })))
}

/// `GET /admin/metrics/timeseries`
pub async fn timeseries(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (name, bucket_ms, default_span) = match query.bucket.as_deref().map(str::trim) {
        None | Some("hour") => ("hour", HOUR_MS, DAY_MS),
        Some("day") => ("day", DAY_MS, 30 * DAY_MS),
        Some(_) => {
            return Err(ApiError::bad_param(
                "bucket",
                "`bucket` must be hour or day",
            ));
        }
    };
    let (from, to) = time_range(
        query.from.as_deref(),
        query.to.as_deref(),
        now_ms(&state),
        default_span,
    )?;
    let first = from.div_euclid(bucket_ms) * bucket_ms;
    let buckets = (to - first + bucket_ms - 1) / bucket_ms;
    if buckets > MAX_BUCKETS {
        return Err(ApiError::bad_param(
            "from",
            format!(
                "The range spans {buckets} buckets of a {name}; at most {MAX_BUCKETS} are \
                 answered: narrow the range or use bucket=day"
            ),
        ));
    }
    let rows = state.db.metrics_series(from, to, bucket_ms).await?;
    let data: Vec<Value> = (0..buckets)
        .map(|index| {
            let start = first + index * bucket_ms;
            match rows.iter().find(|row| row.start_ms == start) {
                Some(row) => json!({
                    "start": seconds(start),
                    "requests": row.requests,
                    "errors": row.errors,
                    "tokens": row.tokens,
                    "cost_usd": usd(row.cost_nanos),
                    "cost_nanos": row.cost_nanos,
                    "p50_latency_ms": row.p50_latency_ms,
                }),
                None => json!({
                    "start": seconds(start),
                    "requests": 0,
                    "errors": 0,
                    "tokens": 0,
                    "cost_usd": 0.0,
                    "cost_nanos": 0,
                    "p50_latency_ms": null,
                }),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": seconds(from),
        "to": seconds(to),
        "bucket": name,
        "data": data,
    })))
}
