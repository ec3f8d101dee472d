//! `GET /admin/request-logs/export`: the request logs of a time range as
//! JSON lines or CSV, streamed (issue 13, item 6: export old rows before
//! `usage.retention` deletes them; `switchyard admin logs export`).
//!
//! | parameter | meaning |
//! |---|---|
//! | `since` (required), `until` | `created_at` in `[since, until)`: unix seconds or RFC 3339; `until` defaults to now |
//! | `format` | `jsonl` (default: one JSON object per line, the fields of `GET /admin/request-logs` and `attempt_log`) or `csv` (a header row, then one row per log; empty cell = null) |
//! | `token_id`, `user_id`, `model`, `provider`, `status`, `status_class`, `stream` | as `GET /admin/request-logs` |
//!
//! Rows come oldest first (by id), read [`PAGE_ROWS`] at a time by keyset
//! (`id > last id`), so memory stays bounded whatever the range and rows
//! written during the export never shift a page. The first page is read
//! before the answer starts: a database failure then is a clean 503; one
//! later ends the stream early (the chunked body has no final chunk, which
//! clients report as an incomplete body, the CLI included).
//!
//! Role: `viewer`. The export reveals nothing `GET /admin/request-logs`
//! (a viewer route) does not already page through, and it changes nothing;
//! deleting is the retention task's, not the route's.

use super::logs::{LogsQuery, parse};
use super::range::parse_time;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::logs::LogFilter;
use crate::db::{Db, RequestLog};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{Data, Query};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use slog::{Logger, warn};

/// Rows per database read.
pub const PAGE_ROWS: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub format: Option<String>,
    pub token_id: Option<String>,
    pub user_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    pub status_class: Option<String>,
    pub stream: Option<String>,
}

/// The export's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::JsonLines => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// Encodes `rows`; the CSV header only with `header`.
pub fn encode(rows: &[RequestLog], format: Format, header: bool) -> Result<Bytes, String> {
    match format {
        Format::JsonLines => {
            let mut out = Vec::with_capacity(rows.len() * 400);
            for row in rows {
                serde_json::to_writer(&mut out, &with_attempt_log(row)?)
                    .map_err(|e| e.to_string())?;
                out.push(b'\n');
            }
            Ok(Bytes::from(out))
        }
        Format::Csv => {
            // The csv crate (BurntSushi's, the de facto standard) quotes and
            // escapes cells (models, providers, error classes are client- or
            // upstream-supplied text).
            let mut writer = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 200));
            if header {
                writer
                    .write_record(CSV_COLUMNS)
                    .map_err(|e| e.to_string())?;
            }
            for row in rows {
                let value = with_attempt_log(row)?;
                let cells = CSV_COLUMNS.iter().map(|column| match &value[*column] {
                    Value::Null => String::new(),
                    Value::String(text) => text.clone(),
                    // The attempt log as its JSON text, numbers and
                    // booleans as JSON writes them.
                    other => other.to_string(),
                });
                writer.write_record(cells).map_err(|e| e.to_string())?;
            }
            writer
                .into_inner()
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        }
    }
}

/// A row as `GET /admin/request-logs` answers it, plus `attempt_log`:
/// each upstream attempt of a request that failed over (the JSON array
/// stored), `null` for one attempt or none. The export is what is left of
/// a row once retention deletes it, so it carries the attempts too.
fn with_attempt_log(row: &RequestLog) -> Result<Value, String> {
    let mut value = serde_json::to_value(row).map_err(|e| e.to_string())?;
    if let Value::Object(map) = &mut value {
        let attempts = row
            .attempt_log
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .unwrap_or(Value::Null);
        map.insert("attempt_log".to_owned(), attempts);
    }
    Ok(value)
}

/// The CSV header: the fields of `GET /admin/request-logs`, in order, then
/// `attempt_log` (a JSON array, empty for one attempt or none).
pub const CSV_COLUMNS: [&str; 31] = [
    "id",
    "created_at",
    "request_id",
    "token_id",
    "user_id",
    "endpoint",
    "provider",
    "key_id",
    "requested_model",
    "upstream_model",
    "status",
    "error_class",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "priced",
    "tokens_estimated",
    "stream",
    "attempts",
    "record_id",
    "usage_flags",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "images",
    "characters",
    "audio_ms",
    "search_units",
    "attempt_log",
];

/// What the stream carries from one page to the next.
struct Cursor {
    db: Db,
    filter: LogFilter,
    format: Format,
    after_id: i64,
    done: bool,
    log: Logger,
}

/// `GET /admin/request-logs/export`
pub async fn export(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let format = match query.format.as_deref().map(str::trim) {
        None | Some("jsonl") => Format::JsonLines,
        Some("csv") => Format::Csv,
        Some(_) => {
            return Err(ApiError::bad_param(
                "format",
                "`format` must be jsonl or csv",
            ));
        }
    };
    let since = query
        .since
        .as_deref()
        .ok_or_else(|| ApiError::bad_param("since", "`since` is required"))?;
    let since_ms = parse_time("since", since)?;
    let (until, until_ms) = match query.until.as_deref() {
        Some(until) => (until.to_owned(), parse_time("until", until)?),
        // Now, in whole seconds, one past so that this second is in.
        None => {
            let seconds = state.clock.now_ms().div_euclid(1000) + 1;
            (seconds.to_string(), seconds * 1000)
        }
    };
    if since_ms >= until_ms {
        return Err(ApiError::bad_param(
            "since",
            "`since` must be before `until`",
        ));
    }
    let (filter, _, _) = parse(&LogsQuery {
        from: Some(since.to_owned()),
        to: Some(until),
        token_id: query.token_id,
        user_id: query.user_id,
        model: query.model,
        provider: query.provider,
        status: query.status,
        status_class: query.status_class,
        stream: query.stream,
        limit: None,
        offset: None,
    })?;
    let first = state
        .db
        .export_request_logs_page(&filter, 0, PAGE_ROWS)
        .await?;
    let head = encode(&first, format, true).map_err(|error| {
        warn!(state.log, "export.encode_failed"; "error" => &error);
        ApiError::Internal
    })?;
    let cursor = Cursor {
        db: state.db.clone(),
        filter,
        format,
        after_id: first.last().map_or(0, |row| row.id),
        done: i64::try_from(first.len()).unwrap_or(0) < PAGE_ROWS,
        log: state.log.clone(),
    };
    let rest = futures_util::stream::unfold(cursor, |mut cursor| async move {
        if cursor.done {
            return None;
        }
        let page = cursor
            .db
            .export_request_logs_page(&cursor.filter, cursor.after_id, PAGE_ROWS)
            .await;
        let chunk = page.map_err(|e| e.to_string()).and_then(|rows| {
            cursor.done = i64::try_from(rows.len()).unwrap_or(0) < PAGE_ROWS;
            cursor.after_id = rows.last().map_or(cursor.after_id, |row| row.id);
            encode(&rows, cursor.format, false)
        });
        match chunk {
            Ok(bytes) => Some((Ok(bytes), cursor)),
            Err(error) => {
                warn!(cursor.log, "export.failed"; "error" => &error, "after_id" => cursor.after_id);
                cursor.done = true;
                Some((
                    Err(actix_web::error::ErrorServiceUnavailable(error)),
                    cursor,
                ))
            }
        }
    });
    let body = futures_util::stream::iter([Ok::<Bytes, actix_web::Error>(head)]).chain(rest);
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"request-logs.{}\"",
                format.extension()
            ),
        ))
        .streaming(body))
}
