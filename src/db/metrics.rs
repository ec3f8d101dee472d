//! Metrics over `request_logs` for a time range: totals, latency
//! percentiles, per-model figures and time series.
//!
//! Everything is computed in the database and only the figures come back:
//! - sums and counts are one aggregate query (casts make SQLite's INTEGER
//!   and PostgreSQL's NUMERIC sums one BIGINT type);
//! - percentiles are nearest-rank (`p` of `n` sorted values is the
//!   `ceil(p * n / 100)`-th) over the requests that succeeded, found with
//!   `ROW_NUMBER()`/`COUNT(*) OVER` window functions, which SQLite (3.25+)
//!   and PostgreSQL both have: the database sorts the range's latencies,
//!   the gateway receives one row per percentile (per bucket, for series).
//!   Memory in the gateway stays bounded whatever the range.
//!
//! The queries are raw SQL (diesel's DSL cannot group by an expression nor
//! write window functions). Their only parameters are integers the caller
//! computed (times, bucket sizes), written into the text: the text is the
//! same on both backends, with no placeholder dialect to choose.

use super::{Db, DbError};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// The percentiles reported, in percent.
pub const PERCENTILES: [i64; 3] = [50, 90, 99];

/// Totals of a time range.
#[derive(QueryableByName, Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    /// Status 2xx.
    #[diesel(sql_type = BigInt)]
    pub successes: i64,
    #[diesel(sql_type = BigInt)]
    pub client_errors: i64,
    #[diesel(sql_type = BigInt)]
    pub server_errors: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_nanos: i64,
    /// Requests that used tokens of a model without a price (failures
    /// that used none are not counted).
    #[diesel(sql_type = BigInt)]
    pub unpriced: i64,
}

/// The figures of one requested model.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelTotals {
    /// `None` for requests that named no model (refused early).
    #[diesel(sql_type = Nullable<Text>)]
    pub model: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub successes: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_nanos: i64,
}

/// The figures of one time bucket.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketTotals {
    /// Start of the bucket, unix milliseconds.
    #[diesel(sql_type = BigInt)]
    pub start_ms: i64,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    /// Requests that did not succeed (status other than 2xx).
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_nanos: i64,
    /// Median latency of the bucket's successes (`None`: none succeeded).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub p50_latency_ms: Option<i64>,
}

/// A ranked value: the `pos`-th smallest of `n`.
#[derive(QueryableByName, Debug)]
struct Ranked {
    #[diesel(sql_type = BigInt)]
    pos: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    val: i64,
}

/// One bucket's median.
#[derive(QueryableByName, Debug)]
struct BucketMedian {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = BigInt)]
    val: i64,
}

/// The nearest rank (1-based) of percentile `p` among `n` values.
pub fn nearest_rank(p: i64, n: i64) -> i64 {
    (p * n + 99) / 100
}

const SUCCESS: &str = "status BETWEEN 200 AND 299";

fn range(from_ms: i64, to_ms: i64) -> String {
    format!("created_at >= {from_ms} AND created_at < {to_ms}")
}

fn sum(expression: &str) -> String {
    format!("CAST(COALESCE(SUM({expression}), 0) AS BIGINT)")
}

fn count_if(condition: &str) -> String {
    sum(&format!("CASE WHEN {condition} THEN 1 ELSE 0 END"))
}

impl Db {
    /// Totals of the requests logged in `[from_ms, to_ms)`.
    pub async fn metrics_totals(&self, from_ms: i64, to_ms: i64) -> Result<Totals, DbError> {
        let query = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS requests, {successes} AS successes, \
             {client} AS client_errors, {server} AS server_errors, \
             {prompt} AS prompt_tokens, {completion} AS completion_tokens, \
             {cost} AS cost_nanos, {unpriced} AS unpriced \
             FROM request_logs WHERE {range}",
            successes = count_if(SUCCESS),
            client = count_if("status BETWEEN 400 AND 499"),
            server = count_if("status BETWEEN 500 AND 599"),
            prompt = sum("prompt_tokens"),
            completion = sum("completion_tokens"),
            cost = sum("cost_nanos"),
            unpriced = count_if("priced = FALSE AND prompt_tokens + completion_tokens > 0"),
            range = range(from_ms, to_ms),
        );
        run_query!(self, |conn| {
            diesel::sql_query(query).get_result::<Totals>(conn).await
        })
    }

    /// Nearest-rank percentiles `ps` of `column` (`latency_ms`, `ttft_ms`)
    /// over the successful requests of `[from_ms, to_ms)` that have a value:
    /// `(p, value)` pairs, empty when there is none.
    pub async fn metrics_percentiles(
        &self,
        column: Column,
        from_ms: i64,
        to_ms: i64,
        ps: &[i64],
    ) -> Result<Vec<(i64, i64)>, DbError> {
        let column = column.name();
        let ranks: Vec<String> = ps
            .iter()
            .map(|p| format!("pos = ({p} * n + 99) / 100"))
            .collect();
        let query = format!(
            "SELECT CAST(pos AS BIGINT) AS pos, CAST(n AS BIGINT) AS n, \
             CAST(val AS BIGINT) AS val FROM ( \
               SELECT {column} AS val, \
                 ROW_NUMBER() OVER (ORDER BY {column}) AS pos, \
                 COUNT(*) OVER () AS n \
               FROM request_logs \
               WHERE {range} AND {SUCCESS} AND {column} IS NOT NULL \
             ) ranked WHERE {ranks}",
            range = range(from_ms, to_ms),
            ranks = if ranks.is_empty() {
                "1 = 0".to_owned()
            } else {
                ranks.join(" OR ")
            },
        );
        let rows = run_query!(self, |conn| {
            diesel::sql_query(query).load::<Ranked>(conn).await
        })?;
        Ok(ps
            .iter()
            .filter_map(|&p| {
                rows.iter()
                    .find(|row| row.pos == nearest_rank(p, row.n))
                    .map(|row| (p, row.val))
            })
            .collect())
    }

    /// Figures per requested model over `[from_ms, to_ms)`, most requested
    /// first (then by name, requests without a model last).
    pub async fn metrics_by_model(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ModelTotals>, DbError> {
        let query = format!(
            "SELECT requested_model AS model, CAST(COUNT(*) AS BIGINT) AS requests, \
             {successes} AS successes, {prompt} AS prompt_tokens, \
             {completion} AS completion_tokens, {cost} AS cost_nanos \
             FROM request_logs WHERE {range} GROUP BY requested_model",
            successes = count_if(SUCCESS),
            prompt = sum("prompt_tokens"),
            completion = sum("completion_tokens"),
            cost = sum("cost_nanos"),
            range = range(from_ms, to_ms),
        );
        let mut rows = run_query!(self, |conn| {
            diesel::sql_query(query).load::<ModelTotals>(conn).await
        })?;
        // Sorted here: the backends order NULLs differently.
        rows.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.model.is_none().cmp(&b.model.is_none()))
                .then_with(|| a.model.cmp(&b.model))
        });
        Ok(rows)
    }

    /// Figures per bucket of `bucket_ms` (buckets aligned on the unix
    /// epoch, so days are UTC days) over `[from_ms, to_ms)`; only buckets
    /// with requests, oldest first.
    pub async fn metrics_series(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<BucketTotals>, DbError> {
        let bucket_ms = bucket_ms.max(1);
        let bucket = format!("(created_at / {bucket_ms})");
        let totals = format!(
            "SELECT CAST({bucket} * {bucket_ms} AS BIGINT) AS start_ms, \
             CAST(COUNT(*) AS BIGINT) AS requests, {errors} AS errors, \
             {tokens} AS tokens, {cost} AS cost_nanos, \
             CAST(NULL AS BIGINT) AS p50_latency_ms \
             FROM request_logs WHERE {range} GROUP BY {bucket} ORDER BY start_ms",
            errors = count_if(&format!("NOT ({SUCCESS})")),
            tokens = sum("prompt_tokens + completion_tokens"),
            cost = sum("cost_nanos"),
            range = range(from_ms, to_ms),
        );
        let medians = format!(
            "SELECT CAST(bucket AS BIGINT) AS bucket, CAST(val AS BIGINT) AS val FROM ( \
               SELECT {bucket} AS bucket, latency_ms AS val, \
                 ROW_NUMBER() OVER (PARTITION BY {bucket} ORDER BY latency_ms) AS pos, \
                 COUNT(*) OVER (PARTITION BY {bucket}) AS n \
               FROM request_logs WHERE {range} AND {SUCCESS} \
             ) ranked WHERE pos = (50 * n + 99) / 100",
            range = range(from_ms, to_ms),
        );
        let (mut rows, medians) = run_query!(self, |conn| {
            let rows = diesel::sql_query(totals).load::<BucketTotals>(conn).await?;
            let medians = diesel::sql_query(medians)
                .load::<BucketMedian>(conn)
                .await?;
            Ok((rows, medians))
        })?;
        for row in &mut rows {
            row.p50_latency_ms = medians
                .iter()
                .find(|median| median.bucket.saturating_mul(bucket_ms) == row.start_ms)
                .map(|median| median.val);
        }
        Ok(rows)
    }
}

/// A latency column percentiles are taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Whole request, as the client saw it.
    Latency,
    /// Time to the first streamed content (streams only).
    TimeToFirstToken,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Latency => "latency_ms",
            Column::TimeToFirstToken => "ttft_ms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ranks() {
        assert_eq!(nearest_rank(50, 1), 1);
        assert_eq!(nearest_rank(99, 1), 1);
        assert_eq!(nearest_rank(50, 4), 2);
        assert_eq!(nearest_rank(50, 5), 3);
        assert_eq!(nearest_rank(90, 10), 9);
        assert_eq!(nearest_rank(99, 10), 10);
        assert_eq!(nearest_rank(99, 200), 198);
    }
}
