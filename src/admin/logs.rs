//! `GET /admin/request-logs`: read-only request logs, newest first,
//! filtered and paged:
//!
//! | parameter | matches |
//! |---|---|
//! | `from`, `to` | `created_at` in `[from, to)`: unix seconds or RFC 3339 |
//! | `token_id`, `user_id` | the gateway token, its owner |
//! | `model` | the requested or the upstream model name |
//! | `provider` | the provider that served (or last failed) the request |
//! | `status` | exactly this HTTP status |
//! | `status_class` | `2xx`, `3xx`, `4xx` or `5xx` (not with `status`) |
//! | `stream` | `true` or `false` |
//! | `limit`, `offset` | paging: 1..=1000 (default 100), from 0 |
//!
//! Answers `{"data": [...], "total": N, "limit", "offset"}`, `total` being
//! the number of rows matching the filters. A bad parameter is a 400 naming it.
//!
//! `GET /admin/request-logs/{id}`: one row, by its id or its request id (the
//! dashboard's detail view). A row records the attempt count, the key that
//! served (or last failed) and the latency and time to first token; the
//! keys of earlier attempts are not stored.

use super::fields;
use super::range::parse_time;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::logs::{LogFilter, StatusFilter};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Path, Query};
use serde::Deserialize;
use serde_json::json;

/// The query string, as text: each parameter is parsed on its own so that
/// an error can name it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub token_id: Option<String>,
    pub user_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    pub status_class: Option<String>,
    pub stream: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

fn integer(param: &'static str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|text| {
        text.trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_param(param, format!("`{param}` must be an integer")))
    })
    .transpose()
}

fn non_empty(param: &'static str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    text.map(|text| {
        let text = text.trim();
        if text.is_empty() {
            Err(ApiError::bad_param(
                param,
                format!("`{param}` must not be empty"),
            ))
        } else {
            Ok(text.to_owned())
        }
    })
    .transpose()
}

/// The filter and paging of a query string.
pub fn parse(query: &LogsQuery) -> Result<(LogFilter, i64, i64), ApiError> {
    let from_ms = query
        .from
        .as_deref()
        .map(|from| parse_time("from", from))
        .transpose()?;
    let to_ms = query
        .to
        .as_deref()
        .map(|to| parse_time("to", to))
        .transpose()?;
    if let (Some(from), Some(to)) = (from_ms, to_ms)
        && from >= to
    {
        return Err(ApiError::bad_param("from", "`from` must be before `to`"));
    }
    let status = match (query.status.as_deref(), query.status_class.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_param(
                "status_class",
                "give `status` or `status_class`, not both",
            ));
        }
        (Some(status), None) => {
            let status = status
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|status| (100..=599).contains(status))
                .ok_or_else(|| {
                    ApiError::bad_param("status", "`status` must be an HTTP status, 100 to 599")
                })?;
            Some(StatusFilter::Exact(status))
        }
        (None, Some(class)) => {
            let class = class.trim().to_ascii_lowercase();
            let hundreds = match class.as_str() {
                "2xx" => 200,
                "3xx" => 300,
                "4xx" => 400,
                "5xx" => 500,
                _ => {
                    return Err(ApiError::bad_param(
                        "status_class",
                        "`status_class` must be 2xx, 3xx, 4xx or 5xx",
                    ));
                }
            };
            Some(StatusFilter::Range(hundreds, hundreds + 99))
        }
        (None, None) => None,
    };
    let stream = match query.stream.as_deref().map(str::trim) {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(_) => {
            return Err(ApiError::bad_param(
                "stream",
                "`stream` must be true or false",
            ));
        }
    };
    let filter = LogFilter {
        from_ms,
        to_ms,
        token_id: integer("token_id", query.token_id.as_deref())?,
        user_id: integer("user_id", query.user_id.as_deref())?,
        model: non_empty("model", query.model.as_deref())?,
        provider: non_empty("provider", query.provider.as_deref())?,
        status,
        stream,
    };
    let (limit, offset) = fields::paging(
        integer("limit", query.limit.as_deref())?,
        integer("offset", query.offset.as_deref())?,
    )?;
    Ok((filter, limit, offset))
}

/// `GET /admin/request-logs`
pub async fn list(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, limit, offset) = parse(&query)?;
    let (rows, total) = state
        .db
        .list_request_logs_filtered(&filter, limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": rows,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /admin/request-logs/{id}`
pub async fn show(
    _: AdminAuth,
    state: Data<AdminState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = id.trim();
    let row = state
        .db
        .get_request_log(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No request log with id `{key}`")))?;
    let mut detail = serde_json::to_value(&row).map_err(|_| ApiError::Internal)?;
    detail["attempt_log"] = json!(row.attempts_detail());
    Ok(HttpResponse::Ok().json(detail))
}
