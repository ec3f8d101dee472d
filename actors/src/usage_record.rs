//! What one finished client request cost: the row the usage actor batches into
//! `request_logs`, the token counters and the daily rollups.

use serde::{Deserialize, Serialize};

/// One client request, success or failure. Money is in nano-USD (1e-9 USD) so
/// that sums are exact integers on every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unix time in milliseconds when the request arrived.
    pub created_at_ms: i64,
    /// The `x-request-id` the client saw.
    pub request_id: String,
    /// The gateway token's database id; `None` when authentication failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<i64>,
    /// The token owner's user id, when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The client-facing route, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The provider that served (or last failed) the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider key's stable id (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The model name as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// The model name sent upstream after redirects and prefix removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    /// The HTTP status the client received.
    pub status: u16,
    /// A short machine-readable failure class (`upstream_timeout`, `rate_limited`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Time from arrival to the last byte sent, in milliseconds.
    pub latency_ms: i64,
    /// Time from arrival to the first content byte, for streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<i64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Cost in nano-USD; zero when `priced` is false.
    pub cost_nanos: i64,
    /// False when no price was known for the model: never a silent $0.
    pub priced: bool,
    /// True when the upstream reported no usage and tokens were estimated.
    pub tokens_estimated: bool,
    pub stream: bool,
    /// Upstream attempts made (0 when the request never reached a provider).
    pub attempts: i32,
    /// Cost at list price before multipliers; `cost_nanos` is what was charged.
    #[serde(default)]
    pub base_cost_nanos: i64,
    /// Token x user price multiplier applied, in parts per million.
    #[serde(default = "one_ppm", skip_serializing_if = "is_one_ppm")]
    pub multiplier_ppm: i64,
    /// The database reservation this request held against its token's
    /// budget or its owner's balance; released when the record is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<i64>,
    /// Unique per request and never chosen by a client (unlike `request_id`,
    /// which may be the client's `x-request-id`): the key that makes writing
    /// a record twice (a replayed journal, a lost commit acknowledgement)
    /// store it once.
    #[serde(default)]
    pub record_id: String,
    /// What was wrong with the figures or strings this record was given
    /// (see [`UsageFlags`]); stored on the row and counted in `/metrics`.
    #[serde(default, skip_serializing_if = "no_flags")]
    pub flags: UsageFlags,
    /// Each upstream attempt, in order, kept only when there was more than
    /// one (a failover): a single attempt is the row's own provider, key and
    /// latency, and an empty list costs nothing on the common path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<AttemptNote>,
    /// Of `prompt_tokens` (which counts every input token): read from the
    /// provider's prompt cache, priced at the cache-read rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`: written to the prompt cache (Anthropic), priced
    /// at the cache-write rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: i64,
    /// Of `completion_tokens` (every output token): spent reasoning,
    /// priced at the reasoning rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: i64,
    /// Media units (the images, audio and rerank doors), each priced at
    /// its own rate on top of the tokens: images generated or edited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub images: i64,
    /// Characters of text turned into speech.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub characters: i64,
    /// Milliseconds of audio transcribed or translated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_ms: i64,
    /// Rerank search units.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub search_units: i64,
    /// The order in which the usage queue took the record
    /// ([`crate::UsageQueue::push`]), across all threads; neither stored nor
    /// journaled (a record read back from the journal has 0). A batch's
    /// rows are written in this order, so that `request_logs` ids follow the
    /// order requests ended in, although each thread journals into a queue
    /// shard of its own.
    #[serde(skip)]
    pub queue_order: u64,
}

/// One upstream attempt of a request: which key, how it ended, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptNote {
    pub provider: String,
    /// The provider key's stable id (never the secret).
    pub key_id: String,
    pub upstream_model: String,
    /// `ok`, or the failure class the attempt ended with
    /// (`upstream_error`, `upstream_timeout`, `rate_limited`, ...).
    pub outcome: String,
    /// Milliseconds from the request's arrival to the attempt's start.
    pub started_ms: i64,
    /// How long the attempt took, to its answer's head or its failure.
    pub duration_ms: i64,
}

/// Anomalies found in what a request's record was made of: a client's
/// strings, an upstream's usage figures. Each is fixed (made storable,
/// clamped) and flagged, never allowed to fail a batch or wrap a counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UsageFlags(u8);

impl UsageFlags {
    /// A string (model, path, provider, ids) had a NUL byte or was too long.
    pub const STRING_SANITIZED: UsageFlags = UsageFlags(1);
    /// The upstream reported negative usage; counted as 0.
    pub const USAGE_NEGATIVE: UsageFlags = UsageFlags(1 << 1);
    /// The upstream reported more tokens than the request could produce.
    pub const USAGE_CLAMPED: UsageFlags = UsageFlags(1 << 2);
    /// The cost left the range a counter can hold.
    pub const COST_CLAMPED: UsageFlags = UsageFlags(1 << 3);

    /// Every flag with its name, in bit order.
    pub const ALL: [(UsageFlags, &'static str); 4] = [
        (Self::STRING_SANITIZED, "string_sanitized"),
        (Self::USAGE_NEGATIVE, "usage_negative"),
        (Self::USAGE_CLAMPED, "usage_clamped"),
        (Self::COST_CLAMPED, "cost_clamped"),
    ];

    pub fn insert(&mut self, flag: UsageFlags) {
        self.0 |= flag.0;
    }

    pub fn contains(self, flag: UsageFlags) -> bool {
        self.0 & flag.0 == flag.0 && flag.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the flags set, comma-separated (`None` when none is).
    pub fn names(self) -> Option<String> {
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }
}

/// Token counts past this are not usage but garbage: no request produces
/// a trillion tokens. A defensive bound; `Meter` clamps far tighter, to what
/// the request itself could produce.
pub const MAX_RECORD_TOKENS: i64 = 1_000_000_000_000;
/// Costs past this ($10 million for one request) are clamped likewise.
pub const MAX_RECORD_COST_NANOS: i64 = 10_000_000_000_000_000;

/// Longest stored form of each string field, in bytes.
const MAX_ID_BYTES: usize = 128;
const MAX_NAME_BYTES: usize = 256;
const MAX_PATH_BYTES: usize = 512;
/// Attempts kept on one row: a provider with hundreds of keys may try them
/// all, and the row stays bounded.
const MAX_ATTEMPT_NOTES: usize = 16;

/// Makes `value` storable in any backend's TEXT column: NUL (which
/// PostgreSQL refuses) becomes U+FFFD, and it is cut to `max` bytes on a
/// character boundary. Returns whether anything changed.
fn make_text_storable(value: &mut String, max: usize) -> bool {
    let mut changed = false;
    if value.contains('\0') {
        *value = value.replace('\0', "\u{FFFD}");
        changed = true;
    }
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        changed = true;
    }
    changed
}

fn clamp_count(value: &mut i64, max: i64, flags: &mut UsageFlags, too_big: UsageFlags) {
    if *value < 0 {
        *value = 0;
        flags.insert(UsageFlags::USAGE_NEGATIVE);
    } else if *value > max {
        *value = max;
        flags.insert(too_big);
    }
}

impl UsageRecord {
    /// Makes every field storable whatever a client or an upstream put in
    /// it (strings without NUL and bounded; counts and money non-negative
    /// and bounded), flagging what had to change. Called once, when the
    /// record is handed to the usage queue, so no batch can be refused for
    /// its content and no sum can overflow on the way.
    pub fn make_storable(&mut self) {
        let mut sanitized = false;
        sanitized |= make_text_storable(&mut self.request_id, MAX_ID_BYTES);
        sanitized |= make_text_storable(&mut self.record_id, MAX_ID_BYTES);
        sanitized |= make_text_storable(&mut self.endpoint, MAX_PATH_BYTES);
        for (field, max) in [
            (&mut self.provider, MAX_NAME_BYTES),
            (&mut self.key_id, MAX_ID_BYTES),
            (&mut self.requested_model, MAX_NAME_BYTES),
            (&mut self.upstream_model, MAX_NAME_BYTES),
            (&mut self.error_class, MAX_ID_BYTES),
        ] {
            if let Some(value) = field {
                sanitized |= make_text_storable(value, max);
            }
        }
        if self.attempt_log.len() > MAX_ATTEMPT_NOTES {
            // Keep the first attempts and the last (the one that answered
            // or ended the request); the row's `attempts` keeps the count.
            self.attempt_log
                .drain(MAX_ATTEMPT_NOTES - 1..self.attempt_log.len() - 1);
        }
        for note in &mut self.attempt_log {
            sanitized |= make_text_storable(&mut note.provider, MAX_NAME_BYTES);
            sanitized |= make_text_storable(&mut note.key_id, MAX_ID_BYTES);
            sanitized |= make_text_storable(&mut note.upstream_model, MAX_NAME_BYTES);
            sanitized |= make_text_storable(&mut note.outcome, MAX_ID_BYTES);
            note.started_ms = note.started_ms.max(0);
            note.duration_ms = note.duration_ms.max(0);
        }
        if sanitized {
            self.flags.insert(UsageFlags::STRING_SANITIZED);
        }
        let flags = &mut self.flags;
        clamp_count(
            &mut self.prompt_tokens,
            MAX_RECORD_TOKENS,
            flags,
            UsageFlags::USAGE_CLAMPED,
        );
        clamp_count(
            &mut self.completion_tokens,
            MAX_RECORD_TOKENS,
            flags,
            UsageFlags::USAGE_CLAMPED,
        );
        // The parts priced apart never exceed their totals: cache reads
        // and writes together within the prompt, reasoning within the
        // completion.
        clamp_count(
            &mut self.cache_read_tokens,
            self.prompt_tokens,
            flags,
            UsageFlags::USAGE_CLAMPED,
        );
        clamp_count(
            &mut self.cache_write_tokens,
            self.prompt_tokens - self.cache_read_tokens,
            flags,
            UsageFlags::USAGE_CLAMPED,
        );
        clamp_count(
            &mut self.reasoning_tokens,
            self.completion_tokens,
            flags,
            UsageFlags::USAGE_CLAMPED,
        );
        // Media units: no request produces more; the meter has bounded
        // them by the request already, this only keeps sums safe.
        for units in [
            &mut self.images,
            &mut self.characters,
            &mut self.audio_ms,
            &mut self.search_units,
        ] {
            clamp_count(units, MAX_RECORD_TOKENS, flags, UsageFlags::USAGE_CLAMPED);
        }
        clamp_count(
            &mut self.cost_nanos,
            MAX_RECORD_COST_NANOS,
            flags,
            UsageFlags::COST_CLAMPED,
        );
        clamp_count(
            &mut self.base_cost_nanos,
            MAX_RECORD_COST_NANOS,
            flags,
            UsageFlags::COST_CLAMPED,
        );
        self.latency_ms = self.latency_ms.max(0);
        self.ttft_ms = self.ttft_ms.map(|ttft| ttft.max(0));
        self.attempts = self.attempts.max(0);
        self.multiplier_ppm = self.multiplier_ppm.max(0);
    }
}

fn one_ppm() -> i64 {
    1_000_000
}

// The journal line leaves out what a record's reader would fill in anyway
// (`None`, zeros, x1, no flags): most requests use few of the media and
// cache fields, and every field written is work on the request's thread.
fn is_one_ppm(ppm: &i64) -> bool {
    *ppm == one_ppm()
}

fn is_zero(count: &i64) -> bool {
    *count == 0
}

fn no_flags(flags: &UsageFlags) -> bool {
    flags.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal line leaves out the fields at their defaults; reading it
    /// back gives the record that was written, whichever fields it used.
    #[test]
    fn records_read_back_as_written_with_or_without_their_optional_fields()
    -> Result<(), serde_json::Error> {
        let typical = UsageRecord {
            created_at_ms: 1_700_000_000_000,
            request_id: "req_1".to_owned(),
            endpoint: "/v1/chat/completions".to_owned(),
            status: 200,
            latency_ms: 12,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_nanos: 75_000,
            priced: true,
            attempts: 1,
            base_cost_nanos: 75_000,
            multiplier_ppm: one_ppm(),
            record_id: "req_1".to_owned(),
            ..UsageRecord::default()
        };
        let line = serde_json::to_string(&typical)?;
        for left_out in [
            "token_id",
            "ttft_ms",
            "multiplier_ppm",
            "flags",
            "images",
            "cache_read",
        ] {
            assert!(!line.contains(left_out), "{left_out} in {line}");
        }
        assert_eq!(serde_json::from_str::<UsageRecord>(&line)?, typical);

        let every_field = UsageRecord {
            token_id: Some(1),
            user_id: Some(2),
            provider: Some("p".to_owned()),
            key_id: Some("k".to_owned()),
            requested_model: Some("m".to_owned()),
            upstream_model: Some("u".to_owned()),
            error_class: Some("upstream_error".to_owned()),
            ttft_ms: Some(3),
            multiplier_ppm: 1_500_000,
            reservation_id: Some(4),
            flags: UsageFlags::USAGE_CLAMPED,
            attempt_log: vec![AttemptNote::default(), AttemptNote::default()],
            cache_read_tokens: 5,
            cache_write_tokens: 6,
            reasoning_tokens: 7,
            images: 8,
            characters: 9,
            audio_ms: 10,
            search_units: 11,
            ..typical.clone()
        };
        let line = serde_json::to_string(&every_field)?;
        assert_eq!(serde_json::from_str::<UsageRecord>(&line)?, every_field);
        // A zero multiplier (free) is written: only x1 is the default.
        let free = UsageRecord {
            multiplier_ppm: 0,
            ..typical
        };
        let line = serde_json::to_string(&free)?;
        assert_eq!(serde_json::from_str::<UsageRecord>(&line)?, free);
        Ok(())
    }

    #[test]
    fn client_strings_become_storable_and_are_flagged() {
        let mut record = UsageRecord {
            request_id: "req_1".to_owned(),
            endpoint: "/proxy/\0/x".to_owned(),
            requested_model: Some(format!("a\0{}", "é".repeat(400))),
            ..UsageRecord::default()
        };
        record.make_storable();
        assert_eq!(record.endpoint, "/proxy/\u{FFFD}/x");
        let model = record.requested_model.unwrap_or_default();
        assert!(!model.contains('\0'));
        assert!(model.len() <= MAX_NAME_BYTES);
        assert!(record.flags.contains(UsageFlags::STRING_SANITIZED));
        assert_eq!(record.flags.names().as_deref(), Some("string_sanitized"));
    }

    #[test]
    fn negative_and_huge_figures_are_clamped_and_flagged() {
        let mut record = UsageRecord {
            prompt_tokens: -5,
            completion_tokens: i64::MAX,
            cost_nanos: -1,
            ..UsageRecord::default()
        };
        record.make_storable();
        assert_eq!(record.prompt_tokens, 0);
        assert_eq!(record.completion_tokens, MAX_RECORD_TOKENS);
        assert_eq!(record.cost_nanos, 0);
        assert_eq!(
            record.flags.names().as_deref(),
            Some("usage_negative,usage_clamped")
        );
        let mut clean = UsageRecord {
            request_id: "req_ok".to_owned(),
            prompt_tokens: 3,
            ..UsageRecord::default()
        };
        clean.make_storable();
        assert!(clean.flags.is_empty());
        assert_eq!(clean.flags.names(), None);
    }

    #[test]
    fn priced_parts_never_exceed_their_totals() {
        let mut record = UsageRecord {
            prompt_tokens: 10,
            completion_tokens: 4,
            cache_read_tokens: 7,
            cache_write_tokens: 9,
            reasoning_tokens: 5,
            ..UsageRecord::default()
        };
        record.make_storable();
        assert_eq!(
            (
                record.cache_read_tokens,
                record.cache_write_tokens,
                record.reasoning_tokens
            ),
            (7, 3, 4)
        );
        assert!(record.flags.contains(UsageFlags::USAGE_CLAMPED));
        let mut fits = UsageRecord {
            prompt_tokens: 10,
            completion_tokens: 4,
            cache_read_tokens: 6,
            cache_write_tokens: 4,
            reasoning_tokens: 4,
            ..UsageRecord::default()
        };
        fits.make_storable();
        assert!(fits.flags.is_empty());
    }

    #[test]
    fn a_long_attempt_log_keeps_its_first_attempts_and_the_last() {
        let note = |n: usize| AttemptNote {
            key_id: format!("k{n}"),
            outcome: "upstream_failed".to_owned(),
            started_ms: -1,
            ..AttemptNote::default()
        };
        let mut record = UsageRecord {
            attempts: 40,
            attempt_log: (0..40).map(note).collect(),
            ..UsageRecord::default()
        };
        record.make_storable();
        let keys: Vec<&str> = record
            .attempt_log
            .iter()
            .map(|n| n.key_id.as_str())
            .collect();
        assert_eq!(keys.len(), MAX_ATTEMPT_NOTES);
        assert_eq!(keys.first(), Some(&"k0"));
        assert_eq!(keys.get(MAX_ATTEMPT_NOTES - 2), Some(&"k14"));
        assert_eq!(keys.last(), Some(&"k39"));
        assert!(record.attempt_log.iter().all(|n| n.started_ms == 0));
        assert_eq!(record.attempts, 40);
    }
}
