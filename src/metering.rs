//! Prices, cost, and where usage records go.
//!
//! Money is integer nano-USD end to end; prices are micro-USD per million
//! tokens, so `cost = tokens x price / 1000` is exact to the nano-dollar
//! (rounded down per request) and sums never drift.

use crate::db::Db;
use crate::providers::openai::Usage;
use futures_util::future::BoxFuture;
use slog::{Logger, warn};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use switchyard_actors::{RecordOutcome, UsageRecord, UsageSink, WriteReport};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input_per_mtok_micros: i64,
    pub output_per_mtok_micros: i64,
    /// Micro-USD per successful call (answered 2xx), on top of the tokens.
    pub per_call_micros: i64,
    /// Prompt tokens read from the provider's cache; `None`: the input rate
    /// (what a provider without a separate rate bills).
    pub cache_read_per_mtok_micros: Option<i64>,
    /// Prompt tokens written to the cache; `None`: the input rate.
    pub cache_write_per_mtok_micros: Option<i64>,
    /// Completion tokens spent reasoning; `None`: the output rate.
    pub reasoning_per_mtok_micros: Option<i64>,
    /// Media units, each on top of the tokens (0: not charged). Micro-USD
    /// per image.
    pub per_image_micros: i64,
    /// Micro-USD per million characters of speech input (as per_mtok).
    pub per_mchar_micros: i64,
    /// Micro-USD per second of audio; times `Usage::audio_ms` that is
    /// nano-USD, exact.
    pub per_audio_second_micros: i64,
    /// Micro-USD per rerank search unit.
    pub per_search_micros: i64,
}

impl Price {
    /// The fixed price of one successful call.
    pub fn per_call_nanos(self) -> i64 {
        self.per_call_micros.saturating_mul(1000)
    }

    /// Plain prompt and completion tokens at the input and output rates
    /// (an estimate, before the answer says what was cached).
    pub fn cost_nanos(self, prompt_tokens: i64, completion_tokens: i64) -> i64 {
        self.usage_cost_nanos(&Usage::tokens(prompt_tokens, completion_tokens))
    }

    /// What `usage` costs: each part at its own rate. The parts are inside
    /// the totals (`Usage`'s convention), so the plain prompt is what is
    /// left of `prompt_tokens` after the cache reads and writes, and the
    /// plain completion what is left after the reasoning.
    pub fn usage_cost_nanos(self, usage: &Usage) -> i64 {
        let cache_read = usage.cache_read_tokens.max(0);
        let cache_write = usage.cache_write_tokens.max(0);
        let reasoning = usage.reasoning_tokens.max(0);
        let plain_prompt = usage
            .prompt_tokens
            .saturating_sub(cache_read)
            .saturating_sub(cache_write)
            .max(0);
        let plain_completion = usage.completion_tokens.saturating_sub(reasoning).max(0);
        let input = self.input_per_mtok_micros;
        let output = self.output_per_mtok_micros;
        let parts = [
            (plain_prompt, input),
            (cache_read, self.cache_read_per_mtok_micros.unwrap_or(input)),
            (
                cache_write,
                self.cache_write_per_mtok_micros.unwrap_or(input),
            ),
            (plain_completion, output),
            (reasoning, self.reasoning_per_mtok_micros.unwrap_or(output)),
        ];
        // Micro-USD per million units x units / 1000 = nano-USD.
        let per_million: i128 = parts
            .iter()
            .chain(&[(usage.characters.max(0), self.per_mchar_micros)])
            .map(|(units, rate)| i128::from(*units) * i128::from(*rate))
            .sum();
        // Micro-USD per unit x units x 1000 = nano-USD; per second x
        // milliseconds is nano-USD as it stands.
        let per_unit: i128 =
            i128::from(usage.images.max(0)) * i128::from(self.per_image_micros) * 1000
                + i128::from(usage.search_units.max(0)) * i128::from(self.per_search_micros) * 1000
                + i128::from(usage.audio_ms.max(0)) * i128::from(self.per_audio_second_micros);
        i64::try_from(per_million / 1000 + per_unit).unwrap_or(i64::MAX)
    }
}

/// Distinct unpriced models warned about per process; past this, no more
/// warnings (a client inventing model names cannot flood the log or memory).
const MAX_UNPRICED_WARNINGS: usize = 1000;

/// model -> price, shared by all workers, reloaded when prices change.
#[derive(Clone, Default)]
pub struct PriceTable {
    prices: Arc<RwLock<HashMap<String, Price>>>,
    /// Where the first lookup of each unpriced model is reported, if set.
    log: Option<Logger>,
    warned: Arc<RwLock<HashSet<String>>>,
}

impl PriceTable {
    /// A table that logs a warning the first time (per process) a model
    /// without a price is looked up.
    pub fn with_log(log: Logger) -> Self {
        Self {
            log: Some(log),
            ..Self::default()
        }
    }

    pub fn replace(&self, prices: HashMap<String, Price>) {
        if let Ok(mut table) = self.prices.write() {
            *table = prices;
        }
    }

    /// The first of `models` with a known price (upstream name, then the
    /// requested one).
    pub fn lookup(&self, models: &[&str]) -> Option<Price> {
        let found = {
            let table = self.prices.read().ok()?;
            models.iter().find_map(|model| table.get(*model).copied())
        };
        if found.is_none()
            && let Some(model) = models.first()
        {
            self.warn_unpriced(model);
        }
        found
    }

    /// Whether `model` has a price (no warning when it has not).
    pub fn contains(&self, model: &str) -> bool {
        self.prices
            .read()
            .map(|table| table.contains_key(model))
            .unwrap_or(false)
    }

    fn warn_unpriced(&self, model: &str) {
        let Some(log) = &self.log else { return };
        // The read lock keeps the common case (already warned) cheap.
        if self
            .warned
            .read()
            .map(|warned| warned.contains(model) || warned.len() >= MAX_UNPRICED_WARNINGS)
            .unwrap_or(true)
        {
            return;
        }
        let first = self
            .warned
            .write()
            .map(|mut warned| {
                warned.len() < MAX_UNPRICED_WARNINGS && warned.insert(model.to_owned())
            })
            .unwrap_or(false);
        if first {
            warn!(log, "prices.model_unpriced"; "model" => model,
                "hint" => "its requests cost $0 until a price is set: PUT /admin/model-prices/{model}");
        }
    }
}

/// Writes usage batches to the database (see [`Db::store_usage`]: records
/// the database refuses are set aside, never retried forever). The usage
/// journal, not this sink, keeps records while the database is away.
pub struct DbUsageSink {
    db: Db,
    /// Where refused records go when even `usage_dead_letters` refuses them.
    dead_letter_file: PathBuf,
    log: Logger,
}

impl DbUsageSink {
    pub fn new(db: Db, dead_letter_file: PathBuf, log: Logger) -> Self {
        Self {
            db,
            dead_letter_file,
            log,
        }
    }
}

impl UsageSink for DbUsageSink {
    fn write(
        &self,
        batch: Arc<Vec<UsageRecord>>,
    ) -> BoxFuture<'static, Result<WriteReport, String>> {
        let db = self.db.clone();
        let file = self.dead_letter_file.clone();
        let log = self.log.clone();
        // Every query runs on the database runtime: dropping this future
        // never cancels a write half-way.
        Box::pin(async move {
            let report = db
                .store_usage(&batch, &file)
                .await
                .map_err(|e| e.to_string())?;
            for (record, outcome) in batch.iter().zip(&report.outcomes) {
                if *outcome == RecordOutcome::DeadLettered {
                    warn!(log, "usage.dead_lettered";
                        "request_id" => &record.request_id,
                        "record_id" => &record.record_id,
                        "hint" => "the database refused this record; it is kept in usage_dead_letters");
                }
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_in_nano_dollars() {
        // $2.50 / $10.00 per million tokens.
        let price = Price {
            input_per_mtok_micros: 2_500_000,
            output_per_mtok_micros: 10_000_000,
            ..Price::default()
        };
        // 1,000 in + 500 out = $0.0025 + $0.005 = 7,500,000 nano-USD.
        assert_eq!(price.cost_nanos(1_000, 500), 7_500_000);
        assert_eq!(price.cost_nanos(0, 0), 0);
        assert_eq!(price.cost_nanos(1, 0), 2_500);
    }

    #[test]
    fn cached_and_reasoning_tokens_are_priced_at_their_own_rates() {
        // Anthropic-like: $3 in, $15 out, cache reads $0.30, writes $3.75.
        let price = Price {
            input_per_mtok_micros: 3_000_000,
            output_per_mtok_micros: 15_000_000,
            cache_read_per_mtok_micros: Some(300_000),
            cache_write_per_mtok_micros: Some(3_750_000),
            reasoning_per_mtok_micros: Some(20_000_000),
            ..Price::default()
        };
        // 1,000 prompt tokens of which 600 read and 100 written; 500
        // completion tokens of which 200 reasoning.
        let usage = Usage {
            cache_read_tokens: 600,
            cache_write_tokens: 100,
            reasoning_tokens: 200,
            ..Usage::tokens(1_000, 500)
        };
        // 300 x 3 + 600 x 0.3 + 100 x 3.75 + 300 x 15 + 200 x 20 micro-USD
        // per thousand = 900 + 180 + 375 + 4,500 + 4,000 = 9,955 micro-USD.
        assert_eq!(price.usage_cost_nanos(&usage), 9_955_000);
        // Without separate rates every part costs its total's rate: the
        // same as the plain figures, never a part counted twice.
        let plain = Price {
            cache_read_per_mtok_micros: None,
            cache_write_per_mtok_micros: None,
            reasoning_per_mtok_micros: None,
            ..price
        };
        assert_eq!(plain.usage_cost_nanos(&usage), plain.cost_nanos(1_000, 500));
        // Parts an upstream over-reports cannot make the plain rest negative.
        let odd = Usage {
            cache_read_tokens: 5_000,
            reasoning_tokens: 9_000,
            ..Usage::tokens(1_000, 500)
        };
        assert_eq!(
            price.usage_cost_nanos(&odd),
            (5_000 * 300_000 + 9_000 * 20_000_000) / 1000
        );
    }

    #[test]
    fn media_units_are_priced_on_top_of_tokens() {
        // gpt-image-1-like: tokens and $0.04 per image; tts: $15 per
        // million characters; whisper: $0.006 a minute; rerank: $2 per
        // thousand searches.
        let price = Price {
            input_per_mtok_micros: 5_000_000,
            per_image_micros: 40_000,
            per_mchar_micros: 15_000_000,
            per_audio_second_micros: 100,
            per_search_micros: 2_000,
            ..Price::default()
        };
        let usage = Usage {
            images: 2,
            characters: 1_000,
            audio_ms: 61_500,
            search_units: 3,
            ..Usage::tokens(100, 0)
        };
        // In micro-USD: 100 tokens x $5/M = 500; 2 images = 80,000; 1,000
        // characters x $15/M = 15,000; 61.5 s x 100 = 6,150; 3 searches =
        // 6,000. Sum 107,650 micro-USD.
        assert_eq!(price.usage_cost_nanos(&usage), 107_650_000);
        // Negative counts from an upstream cost nothing, never a refund.
        let hostile = Usage {
            images: -5,
            audio_ms: -1,
            ..Usage::default()
        };
        assert_eq!(price.usage_cost_nanos(&hostile), 0);
    }

    #[test]
    fn lookup_prefers_the_first_known_model() {
        let table = PriceTable::default();
        let price = Price {
            input_per_mtok_micros: 1,
            output_per_mtok_micros: 2,
            ..Price::default()
        };
        table.replace(HashMap::from([("b".to_owned(), price)]));
        assert_eq!(table.lookup(&["a", "b"]), Some(price));
        assert_eq!(table.lookup(&["a"]), None);
    }
}
