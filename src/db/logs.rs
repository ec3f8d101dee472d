//! Reading request logs: filtered pages for admins (the usage batch writes
//! them, see [`crate::db::usage`]), pages for the export in id order, and
//! the batched deletion of old rows (`usage.retention`, [`crate::retention`]).
//!
//! One boxed query serves both backends. Every filter is on a column of
//! `request_logs`; the time range uses the `created_at` index (and
//! `token_id` with a range, the `(token_id, created_at)` one).

use super::schema::request_logs;
use super::usage::RequestLog;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Which status a log row must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Exact(i32),
    /// `from..=to`, e.g. `400..=499` for `4xx`.
    Range(i32, i32),
}

/// Which request logs to list; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    pub token_id: Option<i64>,
    pub user_id: Option<i64>,
    /// The requested or the upstream model name.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<StatusFilter>,
    pub stream: Option<bool>,
}

/// Applies a [`LogFilter`] to a boxed query (a macro: the query's backend
/// is only known inside each arm of `run_query!`).
macro_rules! filtered {
    ($filter:expr) => {{
        let filter: &LogFilter = $filter;
        let mut query = request_logs::table.into_boxed();
        if let Some(from) = filter.from_ms {
            query = query.filter(request_logs::created_at.ge(from));
        }
        if let Some(to) = filter.to_ms {
            query = query.filter(request_logs::created_at.lt(to));
        }
        if let Some(token_id) = filter.token_id {
            query = query.filter(request_logs::token_id.eq(token_id));
        }
        if let Some(user_id) = filter.user_id {
            query = query.filter(request_logs::user_id.eq(user_id));
        }
        if let Some(model) = filter.model.clone() {
            query = query.filter(
                request_logs::requested_model
                    .eq(model.clone())
                    .or(request_logs::upstream_model.eq(model)),
            );
        }
        if let Some(provider) = filter.provider.clone() {
            query = query.filter(request_logs::provider.eq(provider));
        }
        match filter.status {
            Some(StatusFilter::Exact(status)) => {
                query = query.filter(request_logs::status.eq(status));
            }
            Some(StatusFilter::Range(from, to)) => {
                query = query.filter(request_logs::status.between(from, to));
            }
            None => {}
        }
        if let Some(stream) = filter.stream {
            query = query.filter(request_logs::stream.eq(stream));
        }
        query
    }};
}

impl Db {
    /// A page of the request logs matching `filter`, newest first, and how
    /// many match in all.
    pub async fn list_request_logs_filtered(
        &self,
        filter: &LogFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<RequestLog>, i64), DbError> {
        let filter = filter.clone();
        run_snapshot!(self, |conn| {
            let rows = filtered!(&filter)
                .order((request_logs::created_at.desc(), request_logs::id.desc()))
                .limit(limit)
                .offset(offset)
                .select(RequestLog::as_select())
                .load(conn)
                .await?;
            let total: i64 = filtered!(&filter).count().get_result(conn).await?;
            Ok((rows, total))
        })
    }

    /// Up to `limit` rows matching `filter` with an id above `after_id`, in
    /// id order: one page of an export (keyset paging, so a page costs the
    /// same however deep the export is, and rows written meanwhile never
    /// shift a page).
    pub async fn export_request_logs_page(
        &self,
        filter: &LogFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<RequestLog>, DbError> {
        let filter = filter.clone();
        run_query!(self, |conn| {
            filtered!(&filter)
                .filter(request_logs::id.gt(after_id))
                .order(request_logs::id.asc())
                .limit(limit)
                .select(RequestLog::as_select())
                .load(conn)
                .await
        })
    }

    /// Deletes at most `batch` request logs created before `cutoff_ms`, the
    /// oldest first; returns how many went. One short statement: the
    /// caller loops with a pause between batches.
    pub async fn delete_request_logs_before(
        &self,
        cutoff_ms: i64,
        batch: i64,
    ) -> Result<usize, DbError> {
        // The same text on both backends (integers the gateway computed);
        // `IN (SELECT ... LIMIT)` because neither takes DELETE ... LIMIT
        // (SQLite only when compiled with an option).
        let query = format!(
            "DELETE FROM request_logs WHERE id IN (SELECT id FROM request_logs \
             WHERE created_at < {cutoff_ms} ORDER BY created_at, id LIMIT {})",
            batch.max(1)
        );
        run_query!(self, |conn| diesel::sql_query(query).execute(conn).await)
    }

    /// One request's row: by row id when `key` is a number, else the newest
    /// row with that request id (clients may reuse their own `x-request-id`).
    pub async fn get_request_log(&self, key: &str) -> Result<Option<RequestLog>, DbError> {
        let id = key.parse::<i64>().ok();
        let key = key.to_owned();
        run_query!(self, |conn| {
            match id {
                Some(id) => request_logs::table
                    .find(id)
                    .select(RequestLog::as_select())
                    .first(conn)
                    .await
                    .optional(),
                None => request_logs::table
                    .filter(request_logs::request_id.eq(key))
                    .order(request_logs::id.desc())
                    .select(RequestLog::as_select())
                    .first(conn)
                    .await
                    .optional(),
            }
        })
    }
}
