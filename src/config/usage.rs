//! `[usage]`: how request logs are batched into the database.

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
    /// Past this many unwritten records (database down), records are
    /// appended to `spill_file` and replayed when the database is back.
    pub max_buffered_records: usize,
    /// Append-only spill file (JSON lines).
    pub spill_file: String,
    /// Seed the list prices of common models (`settings/prices.toml`,
    /// compiled in) into `model_prices` at start, for models without a price.
    pub seed_list_prices: bool,
}
