//! Metrics for a time range: totals, latency percentiles, per-model (token,
//! provider) figures and time series.
//!
//! Counts, tokens and cost come from the daily rollups for the whole days
//! of a range, the hourly rollups for the other whole hours and from
//! `request_logs` for the partial hours at its edges
//! ([`Db::metrics_figures`]), so they are exact, a week costs what 7 rollup
//! days and at most 46 rollup hours cost, not a scan of its requests, and
//! the figures outlive the request logs `usage.retention` deletes. Percentiles come from the
//! rollups' histograms (src/db/rollups.rs states their resolution), or
//! exactly from `request_logs` ([`Db::metrics_percentiles`],
//! [`Db::metrics_bucket_percentiles`]) when the caller knows the range holds
//! few requests.
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

use super::rollups::{self, DAY_MS, Figures, HOUR_MS, Rollup, raw_select, rollup_select};
use super::{Db, DbError};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use std::collections::BTreeMap;

/// The percentiles reported, in percent.
pub const PERCENTILES: [i64; 3] = [50, 90, 99];

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

/// A group's key in [`Figures`]: (bucket, name, token id).
type GroupKey = (i64, String, i64);

/// A successful request's latency and time to first token, at an edge.
#[derive(QueryableByName, Debug)]
struct EdgeValue {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = BigInt)]
    latency: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    ttft: Option<i64>,
}

/// One bucket's percentile.
#[derive(QueryableByName, Debug)]
struct BucketRanked {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = BigInt)]
    pos: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
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

impl Db {
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

    /// Exact nearest-rank percentiles `ps` of `column` over the successful
    /// requests of `[from_ms, to_ms)`, per bucket of `bucket_ms` (aligned
    /// on the unix epoch): `(bucket index, p, value)`. Sorts the range's
    /// values: meant for ranges that hold few requests.
    pub async fn metrics_bucket_percentiles(
        &self,
        column: Column,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
        ps: &[i64],
    ) -> Result<Vec<(i64, i64, i64)>, DbError> {
        let bucket_ms = bucket_ms.max(1);
        let column = column.name();
        let bucket = format!("(created_at / {bucket_ms})");
        let ranks: Vec<String> = ps
            .iter()
            .map(|p| format!("pos = ({p} * n + 99) / 100"))
            .collect();
        let query = format!(
            "SELECT CAST(bucket AS BIGINT) AS bucket, CAST(pos AS BIGINT) AS pos, \
             CAST(n AS BIGINT) AS n, CAST(val AS BIGINT) AS val FROM ( \
               SELECT {bucket} AS bucket, {column} AS val, \
                 ROW_NUMBER() OVER (PARTITION BY {bucket} ORDER BY {column}) AS pos, \
                 COUNT(*) OVER (PARTITION BY {bucket}) AS n \
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
            diesel::sql_query(query).load::<BucketRanked>(conn).await
        })?;
        let mut out = Vec::new();
        for row in rows {
            for &p in ps {
                if row.pos == nearest_rank(p, row.n) {
                    out.push((row.bucket, p, row.val));
                }
            }
        }
        Ok(out)
    }

    /// The figures of `[from_ms, to_ms)` grouped by `grouping`, exact:
    /// the whole hours inside the range from the hourly rollups, the
    /// partial hours at its edges (at most two) from `request_logs`, added
    /// per group. Groups without requests are absent (except for
    /// [`Grouping::Total`], always one row). The histograms are summed only
    /// with `histograms` (else left empty: they are most of the work).
    pub async fn metrics_figures(
        &self,
        from_ms: i64,
        to_ms: i64,
        grouping: Grouping,
        histograms: bool,
    ) -> Result<Vec<Figures>, DbError> {
        let first_hour = from_ms.div_euclid(HOUR_MS) * HOUR_MS
            + if from_ms.rem_euclid(HOUR_MS) == 0 {
                0
            } else {
                HOUR_MS
            };
        let end_hour = to_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let mut queries = Vec::new();
        let mut edges = Vec::new();
        if first_hour < end_hour {
            // Whole days from the daily rollups (a week is 7 rows per key,
            // not 168), the hours around them from the hourly ones. Time
            // buckets shorter than a day read hours only.
            let first_day = first_hour.div_euclid(DAY_MS) * DAY_MS
                + if first_hour.rem_euclid(DAY_MS) == 0 {
                    0
                } else {
                    DAY_MS
                };
            let end_day = end_hour.div_euclid(DAY_MS) * DAY_MS;
            let days_fit = match grouping {
                Grouping::Bucket(ms) => ms % DAY_MS == 0,
                _ => true,
            };
            if days_fit && first_day < end_day {
                queries.push(grouping.rollup_query(Rollup::Daily, first_day, end_day, histograms));
                for (from, to) in [(first_hour, first_day), (end_day, end_hour)] {
                    if from < to {
                        queries.push(grouping.rollup_query(Rollup::Hourly, from, to, histograms));
                    }
                }
            } else {
                queries.push(grouping.rollup_query(
                    Rollup::Hourly,
                    first_hour,
                    end_hour,
                    histograms,
                ));
            }
            if from_ms < first_hour {
                edges.push((from_ms, first_hour));
            }
            if end_hour < to_ms {
                edges.push((end_hour, to_ms));
            }
        } else if from_ms < to_ms {
            edges.push((from_ms, to_ms));
        }
        // Edges: counts in SQL; their histograms from the values, bucketed
        // here (80 CASE sums per scanned row cost more than reading two
        // columns of the successes).
        let mut values_queries = Vec::new();
        for &(from, to) in &edges {
            queries.push(grouping.raw_query(from, to, false));
            if histograms {
                values_queries.push(grouping.values_query(from, to));
            }
        }
        let (parts, values) = run_query!(self, |conn| {
            let mut parts = Vec::new();
            for query in queries {
                parts.push(diesel::sql_query(query).load::<Figures>(conn).await?);
            }
            let mut values = Vec::new();
            for query in values_queries {
                values.extend(diesel::sql_query(query).load::<EdgeValue>(conn).await?);
            }
            Ok((parts, values))
        })?;
        let mut merged: BTreeMap<GroupKey, Figures> = BTreeMap::new();
        for row in parts.into_iter().flatten() {
            let key = (row.bucket, row.name.clone(), row.token_id);
            match merged.get_mut(&key) {
                Some(figures) => figures.merge(&row),
                None => {
                    merged.insert(key, row);
                }
            }
        }
        if !values.is_empty() {
            let mut counts: BTreeMap<GroupKey, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
            for value in values {
                let key = (value.bucket, String::new(), 0);
                let (latency, ttft) = counts
                    .entry(key)
                    .or_insert_with(|| (vec![0; rollups::BUCKETS], vec![0; rollups::BUCKETS]));
                if let Some(slot) = latency.get_mut(rollups::bucket_of(value.latency)) {
                    *slot += 1;
                }
                if let Some(slot) = value.ttft.and_then(|t| ttft.get_mut(rollups::bucket_of(t))) {
                    *slot += 1;
                }
            }
            for (key, (latency, ttft)) in counts {
                let text = |counts: Vec<i64>| {
                    counts
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let edge = Figures {
                    bucket: key.0,
                    latency: text(latency),
                    ttft: text(ttft),
                    ..Figures::default()
                };
                merged.entry(key).or_default().merge(&edge);
            }
        }
        let mut rows: Vec<Figures> = merged.into_values().collect();
        if grouping != Grouping::Total {
            rows.retain(|row| row.requests > 0);
        } else if rows.is_empty() {
            rows.push(Figures::default());
        }
        Ok(rows)
    }
}

/// How [`Db::metrics_figures`] groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One row for the whole range.
    Total,
    /// Per time bucket of this many milliseconds (a multiple of an hour),
    /// aligned on the unix epoch.
    Bucket(i64),
    /// Per requested model.
    Model,
    /// Per token.
    Token,
    /// Per provider.
    Provider,
}

impl Grouping {
    /// (bucket, name, token id) expressions over `time` (a unix-ms column)
    /// and the model, provider and token columns given.
    fn keys(self, time: &str, model: &str, provider: &str, token: &str) -> [String; 3] {
        let zero = "CAST(0 AS BIGINT)".to_owned();
        let empty = "CAST('' AS TEXT)".to_owned();
        match self {
            Grouping::Total => [zero.clone(), empty, zero],
            Grouping::Bucket(ms) => [
                format!("CAST({time} / {} AS BIGINT)", ms.max(1)),
                empty,
                zero,
            ],
            Grouping::Model => [zero.clone(), model.to_owned(), zero],
            Grouping::Provider => [zero.clone(), provider.to_owned(), zero],
            Grouping::Token => [zero, empty, token.to_owned()],
        }
    }

    fn query(self, keys: [String; 3], select: &str, from: &str) -> String {
        let [bucket, name, token] = keys;
        let group_by = match self {
            Grouping::Total => String::new(),
            Grouping::Bucket(_) => format!(" GROUP BY {bucket}"),
            Grouping::Model | Grouping::Provider => format!(" GROUP BY {name}"),
            Grouping::Token => format!(" GROUP BY {token}"),
        };
        format!(
            "SELECT {bucket} AS bucket, {name} AS name, {token} AS token_id, {select} \
             FROM {from}{group_by}"
        )
    }

    /// The rollups of `rollup` from `from` to `to` (whole hours or days).
    fn rollup_query(self, rollup: Rollup, from: i64, to: i64, histograms: bool) -> String {
        let time = rollup.time_column();
        self.query(
            self.keys(time, "model", "provider", "token_id"),
            &rollup_select(histograms),
            &format!(
                "{} WHERE {time} >= {from} AND {time} < {to}",
                rollup.table()
            ),
        )
    }

    /// The latency and time to first token of the successes of
    /// `[from_ms, to_ms)`, with their time bucket (histograms are kept per
    /// time bucket only: the groupings by name do not read them).
    fn values_query(self, from_ms: i64, to_ms: i64) -> String {
        let bucket = match self {
            Grouping::Bucket(ms) => format!("CAST(created_at / {} AS BIGINT)", ms.max(1)),
            _ => "CAST(0 AS BIGINT)".to_owned(),
        };
        format!(
            "SELECT {bucket} AS bucket, CAST(latency_ms AS BIGINT) AS latency, \
             CAST(ttft_ms AS BIGINT) AS ttft FROM request_logs \
             WHERE {} AND {SUCCESS}",
            range(from_ms, to_ms)
        )
    }

    /// The request logs of `[from_ms, to_ms)`, summed the same way.
    fn raw_query(self, from_ms: i64, to_ms: i64, histograms: bool) -> String {
        self.query(
            self.keys(
                "created_at",
                "COALESCE(requested_model, '')",
                "COALESCE(provider, '')",
                "COALESCE(token_id, 0)",
            ),
            &raw_select(histograms),
            &format!("request_logs WHERE {}", range(from_ms, to_ms)),
        )
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
