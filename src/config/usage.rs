//! `[usage]`: how request logs are batched into the database, and how long
//! they are kept.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSettings {
    /// Flush buffered usage records at least this often; `0s` flushes each
    /// record at once (tests).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Flush as soon as this many records are buffered.
    pub flush_max_records: usize,
    /// Records held in memory at most; past it they wait in the journal.
    pub max_buffered_records: usize,
    /// The usage journal's directory (see `switchyard_actors::journal`).
    pub journal_dir: String,
    /// Longest pause between two write attempts while the database is
    /// unreachable.
    #[serde(with = "humantime_serde")]
    pub max_retry_delay: Duration,
    /// A spill file left by an earlier version: moved into the journal at
    /// start and replayed like it.
    pub spill_file: String,
    /// Completion tokens an upstream may report for a request that set no
    /// `max_tokens`; more are clamped and the row flagged.
    pub max_completion_tokens: i64,
    /// Prompt tokens an upstream may report beyond the request body's
    /// length in bytes; more are clamped and the row flagged.
    pub prompt_token_allowance: i64,
    /// Seed the list prices of common models (`settings/prices.toml`,
    /// compiled in) into `model_prices` at start, for models without a price.
    pub seed_list_prices: bool,
    /// Request logs older than this are deleted in the background
    /// (`crate::retention`); `0s` keeps them forever. The hourly and daily
    /// rollups are kept, so the metrics' figures outlive the rows.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the retention task looks for old rows.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Rows deleted per statement: a short transaction that never holds
    /// the table (or SQLite's one writer) for long.
    pub retention_batch_rows: i64,
    /// The pause between two batches, leaving the database to the usage
    /// writer.
    #[serde(with = "humantime_serde")]
    pub retention_batch_pause: Duration,
}
