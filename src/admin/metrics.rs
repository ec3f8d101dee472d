//! Metrics over the request logs of a time range (`from`, `to`: unix
//! seconds or RFC 3339; see [`super::range`]):
//!
//! - `GET /admin/metrics/summary`: requests, successes (2xx) and the success
//!   rate, errors by status class, tokens (and of them the cache reads and
//!   writes and reasoning tokens), the media units (images, characters,
//!   audio_ms, search_units: on top of the tokens), cost, latency p50/p90/p99 and
//!   time-to-first-token p50/p99 of the successful requests, unpriced requests.
//!   Default range: the last 24 hours.
//! - `GET /admin/metrics/models-distribution`: the same per requested
//!   model, with each model's share of the requests. Default: 24 hours.
//! - `GET /admin/metrics/timeseries?bucket=hour|day`: requests, errors,
//!   tokens, cost, p50/p99 latency and time to first token per bucket, every bucket of the range
//!   listed (empty ones as zeros). Buckets are aligned on UTC hours and days;
//!   at most [`MAX_BUCKETS`]. Default: the last 24 hours by hour, the last
//!   30 days by day.
//!
//! - `GET /admin/metrics/top?by=model|token|provider&range=hour|day|week&limit=N`:
//!   the items with the most cost over the last hour, day or week.
//!
//! Counts, tokens and cost are exact: whole days from the daily rollups,
//! other whole hours from the hourly ones, the partial hours at the range's
//! edges from `request_logs` ([`crate::db::metrics`]). Percentiles (nearest
//! rank) are exact while the range holds at most [`EXACT_PERCENTILES_UP_TO`]
//! successful requests, and read from the rollups' histograms past that
//! (within ±19%; the summary's `percentiles` says which). A range that
//! starts before the retention cutoff (`usage.retention`, whose old request
//! logs are deleted: [`crate::retention`]) starts at its whole hour and is
//! read from the rollups only, percentiles included, so its figures are the
//! same before and after the deletion. Requests still in the usage buffer (up to
//! `usage.flush_interval`) are not counted yet.

use super::fields::usd;
use super::range::time_range;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::metrics::{Column, Grouping, PERCENTILES};
use crate::db::rollups::{self, Figures};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::db::rollups::HOUR_MS;
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

/// A range reaching before the retention cutoff (`usage.retention`: request
/// logs before it may be deleted) starts at a whole hour, so that it is read
/// from the rollups only, and takes its percentiles from their histograms:
/// `(from, whether exact percentiles may be read)`.
fn retained(state: &AdminState, from: i64) -> (i64, bool) {
    match crate::retention::cutoff_ms(now_ms(state), state.settings.usage.retention) {
        Some(cutoff) if from < cutoff => (from.div_euclid(HOUR_MS) * HOUR_MS, false),
        _ => (from, true),
    }
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

/// Successful requests in a range up to which percentiles are computed
/// exactly from `request_logs` (sorting that many values takes a few
/// milliseconds); past it they come from the rollups' histograms (within
/// ±19%, src/db/rollups.rs).
pub const EXACT_PERCENTILES_UP_TO: i64 = 20_000;

/// The latency and time-to-first-token percentiles of a range: exact or
/// from `figures`' histograms, as [`EXACT_PERCENTILES_UP_TO`] says.
async fn range_percentiles(
    state: &AdminState,
    figures: &Figures,
    from: i64,
    to: i64,
    exact: bool,
) -> Result<(Vec<(i64, i64)>, Vec<(i64, i64)>), ApiError> {
    if exact {
        let latency = state
            .db
            .metrics_percentiles(Column::Latency, from, to, &PERCENTILES)
            .await?;
        let ttft = state
            .db
            .metrics_percentiles(Column::TimeToFirstToken, from, to, &TTFT_PERCENTILES)
            .await?;
        return Ok((latency, ttft));
    }
    let estimate = |histogram: &str, ps: &[i64]| -> Vec<(i64, i64)> {
        let counts = Figures::histogram(histogram);
        ps.iter()
            .filter_map(|&p| rollups::percentile(&counts, p).map(|value| (p, value)))
            .collect()
    };
    Ok((
        estimate(&figures.latency, &PERCENTILES),
        estimate(&figures.ttft, &TTFT_PERCENTILES),
    ))
}

/// The time-to-first-token percentiles reported.
const TTFT_PERCENTILES: [i64; 2] = [50, 99];

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
    let (from, exact_allowed) = retained(&state, from);
    // Counts first; the histograms only when the range is too large for
    // exact percentiles.
    let mut totals = state
        .db
        .metrics_figures(from, to, Grouping::Total, false)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let exact = exact_allowed && totals.successes <= EXACT_PERCENTILES_UP_TO;
    if !exact {
        totals = state
            .db
            .metrics_figures(from, to, Grouping::Total, true)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
    }
    let (latency, ttft) = range_percentiles(&state, &totals, from, to, exact).await?;
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
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_write_tokens": totals.cache_write_tokens,
        "reasoning_tokens": totals.reasoning_tokens,
        "images": totals.images,
        "characters": totals.characters,
        "audio_ms": totals.audio_ms,
        "search_units": totals.search_units,
        "cost_usd": usd(totals.cost_nanos),
        "cost_nanos": totals.cost_nanos,
        "latency_ms": percentiles(&PERCENTILES, &latency),
        "ttft_ms": percentiles(&TTFT_PERCENTILES, &ttft),
        "percentiles": if exact { "exact" } else { "histogram" },
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
    let (from, _) = retained(&state, from);
    let mut rows = state
        .db
        .metrics_figures(from, to, Grouping::Model, false)
        .await?;
    // Most requested first, then by name, requests without a model last.
    rows.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.name.is_empty().cmp(&b.name.is_empty()))
            .then_with(|| a.name.cmp(&b.name))
    });
    let total: i64 = rows.iter().map(|row| row.requests).sum();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "model": (!row.name.is_empty()).then_some(&row.name),
                "requests": row.requests,
                "successes": row.successes,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "total_tokens": row.prompt_tokens + row.completion_tokens,
                "cache_read_tokens": row.cache_read_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "images": row.images,
                "characters": row.characters,
                "audio_ms": row.audio_ms,
                "search_units": row.search_units,
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
    let (from, exact_allowed) = retained(&state, from);
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
    let mut rows = state
        .db
        .metrics_figures(from, to, Grouping::Bucket(bucket_ms), false)
        .await?;
    // Percentiles per bucket: exact while the range holds few successes,
    // else from each bucket's histograms.
    let successes: i64 = rows.iter().map(|row| row.successes).sum();
    let exact_allowed = exact_allowed && successes <= EXACT_PERCENTILES_UP_TO;
    if !exact_allowed {
        rows = state
            .db
            .metrics_figures(from, to, Grouping::Bucket(bucket_ms), true)
            .await?;
    }
    let exact = if exact_allowed {
        let latency = state
            .db
            .metrics_bucket_percentiles(Column::Latency, from, to, bucket_ms, &[50, 99])
            .await?;
        let ttft = state
            .db
            .metrics_bucket_percentiles(Column::TimeToFirstToken, from, to, bucket_ms, &[50, 99])
            .await?;
        Some((latency, ttft))
    } else {
        None
    };
    let figure = |row: &Figures, ttft: bool, p: i64| -> Value {
        let value = match &exact {
            Some((latency, ttft_exact)) => (if ttft { ttft_exact } else { latency })
                .iter()
                .find(|(bucket, q, _)| *bucket == row.bucket && *q == p)
                .map(|(_, _, value)| *value),
            None => rollups::percentile(
                &Figures::histogram(if ttft { &row.ttft } else { &row.latency }),
                p,
            ),
        };
        value.map_or(Value::Null, |v| json!(v))
    };
    let data: Vec<Value> = (0..buckets)
        .map(|index| {
            let start = first + index * bucket_ms;
            match rows.iter().find(|row| row.bucket * bucket_ms == start) {
                Some(row) => json!({
                    "start": seconds(start),
                    "requests": row.requests,
                    "errors": row.requests - row.successes,
                    "tokens": row.prompt_tokens + row.completion_tokens,
                    "cost_usd": usd(row.cost_nanos),
                    "cost_nanos": row.cost_nanos,
                    "p50_latency_ms": figure(row, false, 50),
                    "p99_latency_ms": figure(row, false, 99),
                    "p50_ttft_ms": figure(row, true, 50),
                    "p99_ttft_ms": figure(row, true, 99),
                }),
                None => json!({
                    "start": seconds(start),
                    "requests": 0,
                    "errors": 0,
                    "tokens": 0,
                    "cost_usd": 0.0,
                    "cost_nanos": 0,
                    "p50_latency_ms": null,
                    "p99_latency_ms": null,
                    "p50_ttft_ms": null,
                    "p99_ttft_ms": null,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopQuery {
    /// `model`, `token` or `provider`.
    pub by: Option<String>,
    /// `hour`, `day` (default) or `week`, ending now.
    pub range: Option<String>,
    /// Items answered, 1 to [`MAX_TOP`] (default 10).
    pub limit: Option<String>,
}

/// The most items `/admin/metrics/top` answers.
pub const MAX_TOP: usize = 100;

/// `GET /admin/metrics/top?by=model|token|provider&range=hour|day|week&limit=N`:
/// the items with the most cost first (then the most requests, then by
/// name). Requests that named no model, had no token or reached no
/// provider are not an item (the summary counts them).
pub async fn top(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<TopQuery>,
) -> Result<HttpResponse, ApiError> {
    let (by, grouping) = match query.by.as_deref().map(str::trim) {
        Some("model") => ("model", Grouping::Model),
        Some("token") => ("token", Grouping::Token),
        Some("provider") => ("provider", Grouping::Provider),
        _ => {
            return Err(ApiError::bad_param(
                "by",
                "`by` must be model, token or provider",
            ));
        }
    };
    let (range, span) = match query.range.as_deref().map(str::trim) {
        Some("hour") => ("hour", HOUR_MS),
        None | Some("day") => ("day", DAY_MS),
        Some("week") => ("week", 7 * DAY_MS),
        Some(_) => {
            return Err(ApiError::bad_param(
                "range",
                "`range` must be hour, day or week",
            ));
        }
    };
    let limit = match query.limit.as_deref().map(str::trim) {
        None => 10,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| {
                ApiError::bad_param("limit", format!("`limit` must be 1 to {MAX_TOP}"))
            })?,
    };
    // Ending now, included (as the other routes' default ranges).
    let (from, to) = time_range(None, None, now_ms(&state), span)?;
    let (from, _) = retained(&state, from);
    let mut rows: Vec<Figures> = state
        .db
        .metrics_figures(from, to, grouping, false)
        .await?
        .into_iter()
        .filter(|row| match grouping {
            Grouping::Token => row.token_id != 0,
            _ => !row.name.is_empty(),
        })
        .collect();
    let names: std::collections::HashMap<i64, String> = if grouping == Grouping::Token {
        state
            .db
            .list_tokens()
            .await?
            .into_iter()
            .map(|token| (token.id, token.name))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    for row in &mut rows {
        if grouping == Grouping::Token {
            // A deleted token keeps its figures under its id.
            row.name = names
                .get(&row.token_id)
                .cloned()
                .unwrap_or_else(|| format!("token {}", row.token_id));
        }
    }
    rows.sort_by(|a, b| {
        b.cost_nanos
            .cmp(&a.cost_nanos)
            .then_with(|| b.requests.cmp(&a.requests))
            .then_with(|| a.name.cmp(&b.name))
    });
    let items: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|row| {
            let mut item = json!({
                "name": row.name,
                "requests": row.requests,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "cost": usd(row.cost_nanos),
                "cost_usd": usd(row.cost_nanos),
                "cost_nanos": row.cost_nanos,
            });
            if grouping == Grouping::Token {
                item["token_id"] = json!(row.token_id);
            }
            item
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "by": by,
        "range": range,
        "from": seconds(from),
        "to": seconds(to),
        "items": items,
    })))
}
