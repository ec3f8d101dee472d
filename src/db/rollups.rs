//! Hourly rollups of the request logs (`usage_hourly`, issue 12): what the
//! admin overview reads instead of scanning `request_logs`.
//!
//! One row per (UTC hour, token, requested model, provider): requests,
//! successes (2xx), 4xx and 5xx, unpriced requests (tokens or media units
//! of a model without a price), prompt and completion tokens (and of them the cache
//! reads, cache writes and reasoning tokens), the media units (images,
//! characters of speech, audio milliseconds, rerank search units: on top of
//! the tokens), cost, and two
//! histograms, of the latency and of the time to first token of the
//! successful requests. "No token", "no model" and "no provider" are
//! stored as `0`, `''` and `''`, so the key has no NULL (a NULL would make
//! every row distinct to the unique constraint and defeat the upsert).
//!
//! Histograms: [`BUCKETS`] fixed buckets on a log scale, one column each
//! (`lat_00`..., `ttft_00`...), so that merging is `+` in SQL. Bucket 0 is
//! 0 ms, then the bounds of [`BOUNDS`]: exact below 4 ms, then about two
//! buckets per doubling (each `√2` wide) up to 741,455 ms (12.4 minutes),
//! the last bucket open. A percentile read from a histogram is the
//! geometric middle of its bucket: within a factor `2^(1/4)` (±19%) of the
//! exact nearest-rank value, exact below 4 ms. (The metrics routes use the
//! exact values of `request_logs` while a range holds few requests:
//! [`crate::admin::metrics`].)
//!
//! Written by the usage writer in the transaction that inserts the request
//! logs (`crate::db::usage`): the batch is aggregated in memory and every
//! distinct key becomes one row of one multi-row upsert per batch (chunked
//! like the request logs), so a request costs no statement of its own.
//! The migration `2026-12-03-000200_usage_hourly` fills the table from the
//! request logs already stored, with the same buckets.

use super::cached_sql::{CachedSql, fixed_size_chunks};
use super::{Db, DbError};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use std::collections::BTreeMap;
use switchyard_actors::UsageRecord;

/// One hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// Histogram buckets: bucket `i` holds values `v` with
/// `BOUNDS[i - 1] <= v < BOUNDS[i]` (bucket 0: below 1 ms; the last: from
/// the last bound up).
pub const BOUNDS: [i64; 39] = [
    1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512, 724, 1024, 1448, 2048,
    2896, 4096, 5793, 8192, 11585, 16384, 23170, 32768, 46341, 65536, 92682, 131072, 185364,
    262144, 370728, 524288, 741455,
];
/// Buckets per histogram.
pub const BUCKETS: usize = BOUNDS.len() + 1;
/// The counter columns, in the order of [`HourlyDelta::counters`].
pub const COUNTERS: [&str; 8] = [
    "requests",
    "successes",
    "client_errors",
    "server_errors",
    "unpriced",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
];
/// The units priced apart (issue 15), columns added after the histograms
/// (by two migrations, in this order), in the order of
/// [`HourlyDelta::parts`]: first the token parts, each inside its total
/// (`prompt_tokens`, `completion_tokens`), then the media units, on top of
/// the tokens. Every one has the same name in `request_logs`.
pub const PARTS: [&str; 7] = [
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "images",
    "characters",
    "audio_ms",
    "search_units",
];
/// Counters whose sum could pass `i64::MAX` (the others count requests).
const SATURATING: [&str; 10] = [
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "images",
    "characters",
    "audio_ms",
    "search_units",
];
/// Rows per multi-row upsert, largest first ([`fixed_size_chunks`]): 8 rows
/// bind 792 values, far under both backends' limits, and the usage
/// writer's connection keeps at most two prepared texts per rollup table.
const UPSERT_CHUNK_ROWS: [usize; 2] = [8, 1];

/// The bucket of a value in milliseconds.
pub fn bucket_of(ms: i64) -> usize {
    BOUNDS.partition_point(|&bound| bound <= ms)
}

/// The value a percentile falling in bucket `index` is reported as: the
/// geometric middle of its bounds (the lower bound for the open last one).
pub fn bucket_value(index: usize) -> i64 {
    let low = index
        .checked_sub(1)
        .and_then(|i| BOUNDS.get(i))
        .copied()
        .unwrap_or(0);
    match BOUNDS.get(index) {
        Some(&high) if low > 0 => ((low as f64) * (high as f64)).sqrt().round() as i64,
        _ => low,
    }
}

/// Nearest-rank percentile `p` of a histogram, as [`bucket_value`];
/// `None` when it is empty.
pub fn percentile(histogram: &[i64], p: i64) -> Option<i64> {
    let n: i64 = histogram.iter().sum();
    if n <= 0 {
        return None;
    }
    let rank = super::metrics::nearest_rank(p, n).max(1);
    let mut seen = 0;
    for (index, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket_value(index));
        }
    }
    None
}

/// The histogram column names with `prefix` (`lat`, `ttft`).
pub fn histogram_columns(prefix: &str) -> Vec<String> {
    (0..BUCKETS).map(|i| format!("{prefix}_{i:02}")).collect()
}

/// Every value column of `usage_hourly`, after the key, in table order.
pub fn value_columns() -> Vec<String> {
    COUNTERS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(histogram_columns("lat"))
        .chain(histogram_columns("ttft"))
        .chain(PARTS.iter().map(|c| (*c).to_owned()))
        .collect()
}

/// The key of a rollup row: (hour start in unix ms, token id or 0,
/// requested model or `""`, provider or `""`).
pub type HourKey = (i64, i64, String, String);

/// What a batch adds to one rollup row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyDelta {
    /// In the order of [`COUNTERS`].
    pub counters: [i64; 8],
    pub latency: [i64; BUCKETS],
    pub ttft: [i64; BUCKETS],
    /// In the order of [`PARTS`].
    pub parts: [i64; PARTS.len()],
}

impl Default for HourlyDelta {
    fn default() -> Self {
        Self {
            counters: [0; 8],
            latency: [0; BUCKETS],
            ttft: [0; BUCKETS],
            parts: [0; PARTS.len()],
        }
    }
}

fn bump(slot: Option<&mut i64>, by: i64) {
    if let Some(slot) = slot {
        *slot = slot.saturating_add(by);
    }
}

impl HourlyDelta {
    /// Adds one request.
    pub fn add(&mut self, r: &UsageRecord) {
        let success = (200..300).contains(&r.status);
        let tokens = r.prompt_tokens.saturating_add(r.completion_tokens);
        // Something a price would have charged for: tokens or media units.
        let used =
            tokens > 0 || r.images > 0 || r.characters > 0 || r.audio_ms > 0 || r.search_units > 0;
        let c = &mut self.counters;
        let flags = [
            1,
            i64::from(success),
            i64::from((400..500).contains(&r.status)),
            i64::from((500..600).contains(&r.status)),
            i64::from(!r.priced && used),
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_nanos,
        ];
        for (slot, by) in c.iter_mut().zip(flags) {
            *slot = slot.saturating_add(by);
        }
        let parts = [
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens,
            r.images,
            r.characters,
            r.audio_ms,
            r.search_units,
        ];
        for (slot, by) in self.parts.iter_mut().zip(parts) {
            *slot = slot.saturating_add(by);
        }
        if success {
            bump(self.latency.get_mut(bucket_of(r.latency_ms)), 1);
            if let Some(ttft) = r.ttft_ms {
                bump(self.ttft.get_mut(bucket_of(ttft)), 1);
            }
        }
    }

    /// Every value in the order of [`value_columns`].
    fn values(&self) -> impl Iterator<Item = i64> + '_ {
        self.counters
            .iter()
            .chain(self.latency.iter())
            .chain(self.ttft.iter())
            .chain(self.parts.iter())
            .copied()
    }
}

/// The rollup rows a batch of records adds to, aggregated.
pub fn aggregate_hourly(records: &[&UsageRecord]) -> BTreeMap<HourKey, HourlyDelta> {
    let mut rows: BTreeMap<HourKey, HourlyDelta> = BTreeMap::new();
    for r in records {
        let key = (
            r.created_at_ms.div_euclid(HOUR_MS) * HOUR_MS,
            r.token_id.unwrap_or(0),
            r.requested_model.clone().unwrap_or_default(),
            r.provider.clone().unwrap_or_default(),
        );
        rows.entry(key).or_default().add(r);
    }
    rows
}

/// A rollup table: the hourly one, or the daily one (issue 13) that the
/// metrics read for whole days and that outlives `usage.retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// `usage_hourly`, keyed by `hour`.
    Hourly,
    /// `usage_daily_rollup`, keyed by `day` (UTC midnight in unix ms).
    Daily,
}

impl Rollup {
    /// The table's name.
    pub fn table(self) -> &'static str {
        match self {
            Rollup::Hourly => "usage_hourly",
            Rollup::Daily => "usage_daily_rollup",
        }
    }

    /// The time column of its key.
    pub fn time_column(self) -> &'static str {
        match self {
            Rollup::Hourly => "hour",
            Rollup::Daily => "day",
        }
    }
}

/// One day, in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The daily rows of hourly ones: the same deltas summed per UTC day.
pub fn aggregate_daily(hourly: &BTreeMap<HourKey, HourlyDelta>) -> BTreeMap<HourKey, HourlyDelta> {
    let mut rows: BTreeMap<HourKey, HourlyDelta> = BTreeMap::new();
    for ((hour, token_id, model, provider), delta) in hourly {
        let key = (
            hour.div_euclid(DAY_MS) * DAY_MS,
            *token_id,
            model.clone(),
            provider.clone(),
        );
        let day = rows.entry(key).or_default();
        for (mine, theirs) in day
            .counters
            .iter_mut()
            .chain(day.latency.iter_mut())
            .chain(day.ttft.iter_mut())
            .chain(day.parts.iter_mut())
            .zip(delta.values())
        {
            *mine = mine.saturating_add(theirs);
        }
    }
    rows
}

/// The upsert statements of `rows` into `rollup`, one per chunk of
/// [`UPSERT_CHUNK_ROWS`] sizes. Every value is bound, so each chunk size
/// has one text, prepared once by the usage writer's connection
/// ([`CachedSql`]).
pub fn upsert_statements(rows: &BTreeMap<HourKey, HourlyDelta>, rollup: Rollup) -> Vec<CachedSql> {
    let (table, time) = (rollup.table(), rollup.time_column());
    let columns = value_columns();
    let updates: Vec<String> = columns
        .iter()
        .map(|c| {
            if SATURATING.contains(&c.as_str()) {
                format!(
                    "{c} = CASE WHEN {table}.{c} > {max} - excluded.{c} THEN {max} \
                     ELSE {table}.{c} + excluded.{c} END",
                    max = i64::MAX
                )
            } else {
                format!("{c} = {table}.{c} + excluded.{c}")
            }
        })
        .collect();
    let head = format!(
        "INSERT INTO {table} ({time}, token_id, model, provider, {}) VALUES ",
        columns.join(", ")
    );
    let tail = format!(
        " ON CONFLICT ({time}, token_id, model, provider) DO UPDATE SET {}",
        updates.join(", ")
    );
    let all: Vec<(&HourKey, &HourlyDelta)> = rows.iter().collect();
    fixed_size_chunks(&all, &UPSERT_CHUNK_ROWS)
        .map(|chunk| {
            let mut statement = CachedSql::new();
            statement.sql(&head);
            for (row, ((hour, token_id, model, provider), delta)) in chunk.iter().enumerate() {
                statement
                    .sql(if row == 0 { "(" } else { ", (" })
                    .int(*hour)
                    .sql(", ")
                    .int(*token_id)
                    .sql(", ")
                    .text(model)
                    .sql(", ")
                    .text(provider);
                for value in delta.values() {
                    statement.sql(", ").int(value);
                }
                statement.sql(")");
            }
            statement.sql(&tail);
            statement
        })
        .collect()
}

/// `CAST(COALESCE(SUM(expression), 0) AS BIGINT)`.
fn sum(expression: &str) -> String {
    format!("CAST(COALESCE(SUM({expression}), 0) AS BIGINT)")
}

/// The histogram sums as one text column, `n0,n1,...` (the number of
/// columns is fixed, but no `QueryableByName` struct names 80 of them).
fn joined(parts: Vec<String>) -> String {
    parts
        .iter()
        .map(|part| format!("CAST({part} AS TEXT)"))
        .collect::<Vec<_>>()
        .join(" || ',' || ")
}

/// The value columns summed over rollup rows, as [`Figures`] reads them;
/// without `histograms`, the histogram columns are empty (80 sums fewer).
pub fn rollup_select(histograms: bool) -> String {
    let counters = format!(
        "{}, {}",
        counter_sums(COUNTERS.map(str::to_owned)),
        part_sums()
    );
    if !histograms {
        return format!("{counters}, {NO_HISTOGRAMS}");
    }
    format!(
        "{counters}, {} AS latency, {} AS ttft",
        joined(histogram_columns("lat").iter().map(|c| sum(c)).collect()),
        joined(histogram_columns("ttft").iter().map(|c| sum(c)).collect()),
    )
}

/// Empty histogram columns.
const NO_HISTOGRAMS: &str = "CAST('' AS TEXT) AS latency, CAST('' AS TEXT) AS ttft";

/// The counters: `expressions` (in the order of [`COUNTERS`]) summed.
fn counter_sums(expressions: [String; 8]) -> String {
    expressions
        .iter()
        .zip(COUNTERS)
        .map(|(expression, name)| format!("{} AS {name}", sum(expression)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The token parts and media units summed: the columns have the same
/// names in `request_logs` and in the rollups.
fn part_sums() -> String {
    PARTS
        .iter()
        .map(|name| format!("{} AS {name}", sum(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The condition "`column` falls in bucket `index`".
fn in_bucket(column: &str, index: usize) -> String {
    let low = index.checked_sub(1).and_then(|i| BOUNDS.get(i));
    let high = BOUNDS.get(index);
    match (low, high) {
        (None, Some(high)) => format!("{column} < {high}"),
        (Some(low), Some(high)) => format!("{column} >= {low} AND {column} < {high}"),
        (Some(low), None) => format!("{column} >= {low}"),
        (None, None) => "1 = 0".to_owned(),
    }
}

/// The same figures computed from `request_logs` rows (the edges of a
/// range that are not whole hours; the migration's backfill is the same
/// sums), histograms only when asked.
pub fn raw_select(histograms: bool) -> String {
    const SUCCESS: &str = "status BETWEEN 200 AND 299";
    let counters = [
        "1".to_owned(),
        format!("CASE WHEN {SUCCESS} THEN 1 ELSE 0 END"),
        "CASE WHEN status BETWEEN 400 AND 499 THEN 1 ELSE 0 END".to_owned(),
        "CASE WHEN status BETWEEN 500 AND 599 THEN 1 ELSE 0 END".to_owned(),
        "CASE WHEN priced = FALSE AND (prompt_tokens + completion_tokens > 0 OR images > 0 \
         OR characters > 0 OR audio_ms > 0 OR search_units > 0) THEN 1 ELSE 0 END"
            .to_owned(),
        "prompt_tokens".to_owned(),
        "completion_tokens".to_owned(),
        "cost_nanos".to_owned(),
    ];
    let counters = format!("{}, {}", counter_sums(counters), part_sums());
    if !histograms {
        return format!("{counters}, {NO_HISTOGRAMS}");
    }
    let histogram = |column: &str| -> Vec<String> {
        (0..BUCKETS)
            .map(|i| {
                sum(&format!(
                    "CASE WHEN {SUCCESS} AND {} THEN 1 ELSE 0 END",
                    in_bucket(column, i)
                ))
            })
            .collect()
    };
    format!(
        "{counters}, {} AS latency, {} AS ttft",
        joined(histogram("latency_ms")),
        joined(histogram("ttft_ms")),
    )
}

/// The figures of a group of requests (a whole range, a time bucket, a
/// model, a token or a provider), from rollups, request logs or both added.
#[derive(QueryableByName, Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// The time bucket's index (`start / bucket size`), or 0.
    #[diesel(sql_type = BigInt)]
    pub bucket: i64,
    /// The model's or provider's name (`""`: none), or `""`.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// The token's id (0: none), or 0.
    #[diesel(sql_type = BigInt)]
    pub token_id: i64,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub successes: i64,
    #[diesel(sql_type = BigInt)]
    pub client_errors: i64,
    #[diesel(sql_type = BigInt)]
    pub server_errors: i64,
    #[diesel(sql_type = BigInt)]
    pub unpriced: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_nanos: i64,
    /// Of `prompt_tokens`: read from the prompt cache.
    #[diesel(sql_type = BigInt)]
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`: written to the prompt cache.
    #[diesel(sql_type = BigInt)]
    pub cache_write_tokens: i64,
    /// Of `completion_tokens`: spent reasoning.
    #[diesel(sql_type = BigInt)]
    pub reasoning_tokens: i64,
    /// Media units, on top of the tokens: images generated or edited.
    #[diesel(sql_type = BigInt)]
    pub images: i64,
    /// Characters of text turned into speech.
    #[diesel(sql_type = BigInt)]
    pub characters: i64,
    /// Milliseconds of audio transcribed or translated.
    #[diesel(sql_type = BigInt)]
    pub audio_ms: i64,
    /// Rerank search units.
    #[diesel(sql_type = BigInt)]
    pub search_units: i64,
    /// The latency histogram, `n0,n1,...` ([`Figures::histogram`]).
    #[diesel(sql_type = Text)]
    pub latency: String,
    #[diesel(sql_type = Text)]
    pub ttft: String,
}

impl Figures {
    /// A histogram column as counts (missing or bad parts count 0).
    pub fn histogram(text: &str) -> Vec<i64> {
        let mut counts: Vec<i64> = text
            .split(',')
            .map(|part| part.trim().parse().unwrap_or(0))
            .collect();
        counts.resize(BUCKETS, 0);
        counts
    }

    /// Adds `other`'s figures (same group) to these.
    pub fn merge(&mut self, other: &Figures) {
        for (mine, theirs) in [
            (&mut self.requests, other.requests),
            (&mut self.successes, other.successes),
            (&mut self.client_errors, other.client_errors),
            (&mut self.server_errors, other.server_errors),
            (&mut self.unpriced, other.unpriced),
            (&mut self.prompt_tokens, other.prompt_tokens),
            (&mut self.completion_tokens, other.completion_tokens),
            (&mut self.cost_nanos, other.cost_nanos),
            (&mut self.cache_read_tokens, other.cache_read_tokens),
            (&mut self.cache_write_tokens, other.cache_write_tokens),
            (&mut self.reasoning_tokens, other.reasoning_tokens),
            (&mut self.images, other.images),
            (&mut self.characters, other.characters),
            (&mut self.audio_ms, other.audio_ms),
            (&mut self.search_units, other.search_units),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.ttft, &other.ttft),
        ] {
            let sum: Vec<String> = Figures::histogram(mine)
                .iter()
                .zip(Figures::histogram(theirs))
                .map(|(a, b)| a.saturating_add(b).to_string())
                .collect();
            *mine = sum.join(",");
        }
    }
}

/// One stored rollup row ([`Db::list_hourly_rollups`]).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct HourlyRow {
    #[diesel(sql_type = BigInt)]
    pub hour: i64,
    #[diesel(sql_type = BigInt)]
    pub token_id: i64,
    #[diesel(sql_type = Text)]
    pub model: String,
    #[diesel(sql_type = Text)]
    pub provider: String,
    #[diesel(embed)]
    pub figures: Figures,
}

impl Db {
    /// Every rollup row, by key (checks and tools; the metrics routes sum
    /// them in the database instead).
    pub async fn list_hourly_rollups(&self) -> Result<Vec<HourlyRow>, DbError> {
        self.list_rollups(Rollup::Hourly).await
    }

    /// Every row of `rollup`, by key (`hour` holds the day's start for
    /// the daily one).
    pub async fn list_rollups(&self, rollup: Rollup) -> Result<Vec<HourlyRow>, DbError> {
        let (table, time) = (rollup.table(), rollup.time_column());
        let query = format!(
            "SELECT {time} AS hour, token_id, model, provider, CAST(0 AS BIGINT) AS bucket, \
             CAST('' AS TEXT) AS name, {} FROM {table} \
             GROUP BY {time}, token_id, model, provider \
             ORDER BY {time}, token_id, model, provider",
            rollup_select(true)
        );
        let mut rows = run_query!(self, |conn| {
            diesel::sql_query(query).load::<HourlyRow>(conn).await
        })?;
        for row in &mut rows {
            row.figures.token_id = row.token_id;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_once() {
        assert_eq!(bucket_of(-5), 0);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(3), 3);
        assert_eq!(bucket_of(4), 4);
        assert_eq!(bucket_of(5), 4);
        assert_eq!(bucket_of(741_454), BUCKETS - 2);
        assert_eq!(bucket_of(i64::MAX), BUCKETS - 1);
        // Bounds grow by at most √2 from 4 ms on (the stated resolution).
        for pair in BOUNDS.windows(2).skip(3) {
            if let [low, high] = pair {
                assert!((*high as f64) / (*low as f64) <= 1.5, "{low}..{high}");
            }
        }
        // The reported value of a bucket lies in it.
        for index in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_value(index)), index, "bucket {index}");
        }
    }

    #[test]
    fn percentiles_are_within_the_stated_resolution() {
        let values: Vec<i64> = (1..=1000).map(|i| i * 37 % 5000 + 5).collect();
        let mut histogram = [0i64; BUCKETS];
        for v in &values {
            if let Some(slot) = histogram.get_mut(bucket_of(*v)) {
                *slot += 1;
            }
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for p in [50, 90, 99] {
            let rank = super::super::metrics::nearest_rank(p, sorted.len() as i64);
            let exact = sorted.get((rank - 1) as usize).copied().unwrap_or(0) as f64;
            let estimate = percentile(&histogram, p).unwrap_or(0) as f64;
            let ratio = estimate / exact;
            assert!(
                (1.0 / 1.19..=1.19).contains(&ratio),
                "p{p}: {estimate} vs {exact}"
            );
        }
        assert_eq!(percentile(&[0; BUCKETS], 50), None);
    }

    #[test]
    fn histograms_merge_by_bucket() {
        let mut a = Figures {
            requests: 1,
            latency: "1,2".to_owned(),
            ttft: String::new(),
            ..Figures::default()
        };
        let b = Figures {
            requests: 2,
            latency: "0,1,5".to_owned(),
            ttft: "3".to_owned(),
            ..Figures::default()
        };
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(Figures::histogram(&a.latency)[..3], [1, 3, 5]);
        assert_eq!(Figures::histogram(&a.ttft)[0], 3);
    }
}
