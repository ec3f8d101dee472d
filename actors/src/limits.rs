//! Per-token limits: rate limits, parallelism, periodic quotas and budgets,
//! enforced with reservations so that concurrent requests cannot together
//! pass a limit that each would pass alone.
//!
//! Plain data and logic, no actor, no I/O and no clock of its own: every
//! method takes `now_ms` (Unix time in milliseconds, UTC), so tests drive time
//! by hand and never sleep. A `now_ms` earlier than one already seen is taken
//! as the latest seen: time inside the engine never runs backwards. The owner
//! (an actor, later) keeps one [`TokenLimits`] and passes each token's
//! configured [`Limits`] into every call; the engine keeps only the spend
//! state.
//!
//! # Life of a request
//!
//! 1. [`TokenLimits::admit`] with an [`Estimate`] (the request's `max_tokens`
//!    or a configured default, priced at the model's price). Every limit is
//!    checked against *committed spend + outstanding reservations + this
//!    estimate*; on success the estimate is held (a [`Reservation`]), the
//!    request takes a parallel slot and is counted in the rate window.
//! 2. Exactly one of:
//!    - [`TokenLimits::settle`] with the [`Actual`] usage: the estimate is
//!      replaced by the real figures everywhere and the slot is freed;
//!    - [`TokenLimits::release`] when the request never reached an upstream:
//!      nothing was spent, everything it held is freed (including its place
//!      in the rate window);
//!    - neither (a crashed or forgotten request): [`TokenLimits::expire`]
//!      drops reservations older than the configured TTL, freeing their
//!      holds. Their place in the rate window stays (at the estimate) until it
//!      ages out, since nobody knows what they spent. A settlement arriving
//!      after expiry is still charged (see [`Settled::AfterExpiry`]).
//!
//! # The limits
//!
//! - **RPM / TPM**: exact *sliding* one-minute windows (a log of the requests
//!   admitted in the last 60 s, each with its tokens: the estimate until it is
//!   settled, then the actual). In *any* 60 s interval at most `rpm` requests
//!   are admitted, so the worst-case burst is `rpm` requests at once, never
//!   the `2 × rpm` of fixed windows. The same holds for TPM with estimates;
//!   actual tokens may exceed them by the overshoot below. Memory per token is
//!   one entry per request admitted in the last minute (at most `rpm` when an
//!   RPM limit is set). A request is inside the window while
//!   `now < admitted + 60_000`.
//! - **Parallel**: requests admitted and not yet settled, released or expired.
//! - **Quotas**: requests, tokens or cost per minute, hour, day or month,
//!   resetting on calendar boundaries in UTC (the month quota of January
//!   resets at `Feb 1 00:00:00.000 UTC`; leap years included). Spend counts
//!   in the period in which it is *settled*; outstanding reservations count
//!   against every period until they settle (a hold made at 23:59 still
//!   guards the new day).
//! - **Budgets**: lifetime money (nano-USD) and token budgets; they never
//!   reset (an admin raises them).
//!
//! A limit of `n` admits while `used + max(estimate, 1) <= n`: an exhausted
//! limit refuses even a request whose estimate is zero, and a limit of 0
//! refuses everything.
//!
//! When several limits refuse, the answer names the first in this order:
//! money budget, token budget, quotas (in configured order), TPM, RPM,
//! parallel. Budgets come first because retrying cannot help there.
//!
//! | refusal               | status | `retry_after_ms`                          |
//! |-----------------------|--------|-------------------------------------------|
//! | [`Limit::Budget`]     | 402    | none                                      |
//! | [`Limit::Quota`]      | 429    | until the period ends                     |
//! | [`Limit::Tpm`]        | 429    | until enough tokens leave the window      |
//! | [`Limit::Rpm`]        | 429    | until the oldest blocking request leaves  |
//! | [`Limit::Parallel`]   | 429    | [`PARALLEL_RETRY_MS`] (a hint)            |
//!
//! # Worst-case overshoot
//!
//! Admission guarantees, for every limit `L` (budget, quota or TPM):
//! `committed + Σ estimates of outstanding reservations <= L`. Settlement may
//! then commit more than was reserved. For one instance, the most a limit can
//! be passed by is
//!
//! ```text
//! overshoot(L) = final committed − L
//!             <= Σ_{i ∈ F} max(0, actual_i − estimate_i) + Σ_{i ∈ X} actual_i
//! ```
//!
//! where `F` is the set of requests holding a reservation just after the last
//! admission `L` allowed (that admission included), and `X` the requests
//! whose reservation had expired by then and that settled after it. (At that
//! last admission `committed + Σ_{F} estimate <= L`; afterwards only the
//! requests of `F` and `X` add to `committed`.) Once `committed >= L` nothing
//! more is admitted against it.
//!
//! With `max_parallel = P`, a per-request underestimate of at most `d` and a
//! TTL longer than any request (`X` empty), this is **`overshoot <= P × d`**:
//! only requests in flight when the limit is reached can push past it. For
//! tokens `d = 0` when the estimate is `prompt tokens + max_tokens`, since the
//! upstream cannot exceed `max_tokens`; for money likewise when that estimate
//! is priced at the model's prices, otherwise `d` is the largest cost
//! underestimate (a prompt counted short, a price changed mid-request).
//! Without `max_parallel`, `|F| <= L / e_min` when every estimate is at least
//! `e_min > 0` (that many reservations fit under `L`).
//!
//! Several instances sharing a database each keep their own [`TokenLimits`];
//! across them the atomic database reservation bounds the budget instead
//! (DESIGN §6), and each instance's local figures are refreshed with
//! [`TokenLimits::load_committed`]. Lowering a limit below the spend already
//! committed is not overshoot: the token is simply refused until it resets.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Width of the RPM/TPM sliding window.
pub const WINDOW_MS: u64 = 60_000;
/// The `retry_after` hint when the parallel limit refuses (no window tells
/// when a slot frees up).
pub const PARALLEL_RETRY_MS: u64 = 1_000;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
const NANOS_PER_USD: u64 = 1_000_000_000;

/// A calendar period in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Month,
}

impl Period {
    const ALL: [Period; 4] = [Period::Minute, Period::Hour, Period::Day, Period::Month];

    fn index(self) -> usize {
        match self {
            Period::Minute => 0,
            Period::Hour => 1,
            Period::Day => 2,
            Period::Month => 3,
        }
    }

    /// The start (inclusive) of the period containing `now_ms`.
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            Period::Minute => now_ms - now_ms % MINUTE_MS,
            Period::Hour => now_ms - now_ms % HOUR_MS,
            Period::Day => now_ms - now_ms % DAY_MS,
            Period::Month => {
                let (y, m, _) = civil_from_days((now_ms / DAY_MS) as i64);
                days_from_civil(y, m, 1) as u64 * DAY_MS
            }
        }
    }

    /// The end (exclusive) of the period containing `now_ms`: the start of
    /// the next one.
    pub fn end_ms(self, now_ms: u64) -> u64 {
        match self {
            Period::Minute => self.start_ms(now_ms) + MINUTE_MS,
            Period::Hour => self.start_ms(now_ms) + HOUR_MS,
            Period::Day => self.start_ms(now_ms) + DAY_MS,
            Period::Month => {
                let (y, m, _) = civil_from_days((now_ms / DAY_MS) as i64);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) as u64 * DAY_MS
            }
        }
    }

    fn adjective(self) -> &'static str {
        match self {
            Period::Minute => "per-minute",
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// What a periodic quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaKind {
    Requests,
    Tokens,
    /// Nano-USD.
    Cost,
}

/// At most `limit` of `kind` per calendar `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub period: Period,
    pub kind: QuotaKind,
    /// Requests, tokens or nano-USD.
    pub limit: u64,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetKind {
    /// Nano-USD.
    Cost,
    Tokens,
}

/// One token's configured limits; `None` (or no quotas) means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per sliding minute.
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per sliding minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
    #[serde(default)]
    pub quotas: Vec<Quota>,
    /// Lifetime money budget in nano-USD.
    pub budget_nanos: Option<u64>,
    /// Lifetime token budget.
    pub budget_tokens: Option<u64>,
}

/// What a request is expected to cost at most, held while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub tokens: u64,
    pub cost_nanos: u64,
}

/// What a request really cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    pub tokens: u64,
    pub cost_nanos: u64,
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Rpm,
    Tpm,
    Parallel,
    Quota { period: Period, kind: QuotaKind },
    Budget { kind: BudgetKind },
}

/// Why a request was not admitted, ready for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// 429 for rate limits, quotas and parallelism; 402 for budgets.
    pub status: u16,
    /// How long until retrying may succeed; `None` for budgets.
    pub retry_after_ms: Option<u64>,
    /// Names the limit and when it resets.
    pub message: String,
}

impl Refusal {
    /// `retry_after_ms` in whole seconds for a `Retry-After` header, rounded
    /// up and at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1))
    }
}

/// A held estimate. Deliberately not `Clone`: it is settled or released
/// exactly once, by value.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    id: u64,
    token_id: i64,
    estimate: Estimate,
}

impl Reservation {
    pub fn token_id(&self) -> i64 {
        self.token_id
    }

    pub fn estimate(&self) -> Estimate {
        self.estimate
    }
}

/// How a settlement landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The reservation was still held; its estimate was replaced.
    OnTime,
    /// The reservation had already expired (its holds were gone): the actual
    /// spend was charged on top. Worth a log line: the TTL is too short or a
    /// request hung.
    AfterExpiry,
}

/// Spend of the current period of one calendar period, for seeding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodSpend {
    pub requests: u64,
    pub tokens: u64,
    pub cost_nanos: u64,
}

/// Committed spend of one token as stored, for [`TokenLimits::load_committed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Lifetime spend in nano-USD.
    pub spent_nanos: u64,
    /// Lifetime tokens.
    pub spent_tokens: u64,
    /// Spend so far in the period containing the `now_ms` passed with it;
    /// periods not listed start at zero.
    pub periods: Vec<(Period, PeriodSpend)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PeriodUsage {
    /// Start of the period these figures belong to.
    start_ms: u64,
    spend: PeriodSpend,
}

/// A request as it enters a [`Window`].
#[derive(Debug, Clone, Copy)]
struct Hit {
    at_ms: u64,
    tokens: u64,
    reservation: u64,
}

/// What a [`Window`] holds at one place: one request still in flight, or
/// requests admitted in the same millisecond and settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    at_ms: u64,
    tokens: u64,
    requests: u64,
    /// The request's reservation while it is in flight; settled requests
    /// are never looked up again.
    reservation: Option<u64>,
}

/// The tag of an [`Entry`] holding settled requests; the rest of the tag
/// is their count. Without it, the tag is a reservation id's offset.
const SETTLED: u32 = 1 << 31;

/// A [`Window`] entry in 16 bytes: its time as an offset from the window's
/// base time, its tokens, and a tag: a request in flight (its reservation
/// id as an offset from the base id, below [`SETTLED`]) or settled requests
/// of one millisecond (`SETTLED | count`).
///
/// Settled requests of one millisecond are merged because a window holds
/// the last minute of a token's requests: one entry per request cost ~1M
/// entries for a token at 17k requests/s (bench/README.md: the every-limit
/// token's window was the largest block of the gateway's peak RSS). Merged,
/// it is at most one entry per millisecond plus the requests in flight,
/// and every figure stays exact: nothing asks for more than a settled
/// request's millisecond.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tokens: u64,
    at: u32,
    tag: u32,
}

impl Entry {
    fn settled_requests(self) -> Option<u32> {
        (self.tag & SETTLED != 0).then_some(self.tag & !SETTLED)
    }

    fn requests(self) -> u64 {
        self.settled_requests().map_or(1, u64::from)
    }

    /// Adds `next` (the entry after this one) into this one if both hold
    /// settled requests of the same millisecond and the sums fit.
    fn absorb(&mut self, next: Entry) -> bool {
        let (Some(mine), Some(theirs)) = (self.settled_requests(), next.settled_requests()) else {
            return false;
        };
        if self.at != next.at {
            return false;
        }
        let (Some(count), Some(tokens)) = (
            mine.checked_add(theirs).filter(|count| *count < SETTLED),
            self.tokens.checked_add(next.tokens),
        ) else {
            return false;
        };
        self.tag = SETTLED | count;
        self.tokens = tokens;
        true
    }
}

/// Windows at most this long are never compacted: merging pays off only
/// for a token with many requests a millisecond.
const COMPACT_FROM_ENTRIES: usize = 64;

/// The RPM/TPM log of one token, with its request count and token sum kept
/// as requests come and go: summing the log at every admission cost
/// O(requests in the last minute), ~240 µs per request at 8k requests/s
/// (issue 11's benchmark).
///
/// Requests are pushed in admission order after a prune, so their times
/// span at most [`WINDOW_MS`] and the reservation ids of those in flight
/// (one counter for the whole engine) at most the engine's admissions of a
/// minute: offsets from the front always fit. The bases move to the front
/// when a new offset would not fit (O(entries), once in 2^32 ms or 2^31
/// admissions).
///
/// When the entries fill their room, adjacent settled entries of the same
/// millisecond are merged ([`Entry`]) before the room grows: each
/// compaction follows at least a quarter of the room's pushes, so its
/// O(entries) pass costs O(1) per request.
#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Entry>,
    base_ms: u64,
    base_id: u64,
    /// Requests in the entries.
    requests: u64,
    /// Sum of the entries' tokens; u128 so that adding and removing never
    /// saturate out of step.
    tokens: u128,
}

impl Window {
    fn push_back(&mut self, hit: Hit) {
        self.tokens += u128::from(hit.tokens);
        self.requests += 1;
        if self.entries.is_empty() {
            self.base_ms = hit.at_ms;
            self.base_id = hit.reservation;
        }
        if self.entries.len() == self.entries.capacity()
            && self.entries.len() >= COMPACT_FROM_ENTRIES
        {
            self.compact();
        }
        let entry = match self.encode(hit) {
            Some(entry) => entry,
            None => {
                self.rebase(hit.reservation);
                // Past what a minute of admissions can span (see above):
                // the offsets saturate rather than fail the admission.
                self.encode(hit).unwrap_or(Entry {
                    tokens: hit.tokens,
                    at: offset(hit.at_ms, self.base_ms).unwrap_or(u32::MAX),
                    tag: id_offset(hit.reservation, self.base_id).unwrap_or(SETTLED - 1),
                })
            }
        };
        self.entries.push_back(entry);
    }

    fn encode(&self, hit: Hit) -> Option<Entry> {
        Some(Entry {
            tokens: hit.tokens,
            at: offset(hit.at_ms, self.base_ms)?,
            tag: id_offset(hit.reservation, self.base_id)?,
        })
    }

    fn decode(&self, entry: Entry) -> Slot {
        let settled = entry.settled_requests();
        Slot {
            at_ms: self.base_ms + u64::from(entry.at),
            tokens: entry.tokens,
            requests: entry.requests(),
            reservation: settled
                .is_none()
                .then(|| self.base_id + u64::from(entry.tag)),
        }
    }

    /// Moves the base time to the front entry's and the base id to the
    /// first request in flight (or to `incoming`'s when none is).
    fn rebase(&mut self, incoming: u64) {
        let Some(front) = self.entries.front().copied() else {
            return;
        };
        let first_id = self
            .entries
            .iter()
            .find(|entry| entry.settled_requests().is_none())
            .map(|entry| entry.tag);
        self.base_ms += u64::from(front.at);
        match first_id {
            Some(first_id) => self.base_id += u64::from(first_id),
            None => self.base_id = incoming,
        }
        for entry in &mut self.entries {
            entry.at -= front.at;
            if entry.settled_requests().is_none() {
                // Ids in flight ascend, so none is below the first one.
                entry.tag -= first_id.unwrap_or(0);
            }
        }
    }

    /// Merges adjacent settled entries of the same millisecond, in place.
    fn compact(&mut self) {
        let entries = self.entries.make_contiguous();
        let mut kept = 0;
        for index in 0..entries.len() {
            let entry = entries[index];
            if kept > 0 && entries[kept - 1].absorb(entry) {
                continue;
            }
            entries[kept] = entry;
            kept += 1;
        }
        self.entries.truncate(kept);
    }

    fn pop_front(&mut self) -> Option<Slot> {
        let entry = self.entries.pop_front()?;
        self.tokens -= u128::from(entry.tokens);
        self.requests -= entry.requests();
        Some(self.decode(entry))
    }

    fn front(&self) -> Option<Slot> {
        self.entries.front().map(|entry| self.decode(*entry))
    }

    /// When the `index`-th request of the window (from 0, oldest first)
    /// was admitted.
    fn admitted_ms(&self, index: u64) -> Option<u64> {
        let mut before = 0u64;
        self.iter().find_map(|slot| {
            before += slot.requests;
            (before > index).then_some(slot.at_ms)
        })
    }

    /// Requests in the window.
    fn len(&self) -> u64 {
        self.requests
    }

    fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.entries.iter().map(|entry| self.decode(*entry))
    }

    fn tokens(&self) -> u64 {
        u64::try_from(self.tokens).unwrap_or(u64::MAX)
    }

    /// The entry of `reservation` while it is in flight (searched from the
    /// newest end: a settling request is recent).
    fn position(&self, reservation: u64) -> Option<usize> {
        let tag = id_offset(reservation, self.base_id)?;
        self.entries.iter().rposition(|entry| entry.tag == tag)
    }

    /// Replaces a request's estimate by its actual tokens; from then on it
    /// is settled, and may share its entry with others of its millisecond.
    fn set_tokens(&mut self, reservation: u64, tokens: u64) {
        if let Some(entry) = self
            .position(reservation)
            .and_then(|index| self.entries.get_mut(index))
        {
            self.tokens = self.tokens - u128::from(entry.tokens) + u128::from(tokens);
            entry.tokens = tokens;
            entry.tag = SETTLED | 1;
        }
    }

    /// Gives back room a burst left behind: a window a quarter full
    /// halves its room (amortised O(1): each halving follows at least a
    /// quarter of the room's pops).
    fn shrink_when_sparse(&mut self) {
        let room = self.entries.capacity();
        if room > 1_024 && self.entries.len() < room / 4 {
            self.entries.shrink_to(room / 2);
        }
    }

    /// Takes a request in flight out of the window.
    fn remove(&mut self, reservation: u64) {
        if let Some(index) = self.position(reservation)
            && let Some(entry) = self.entries.remove(index)
        {
            self.tokens -= u128::from(entry.tokens);
            self.requests -= 1;
        }
    }
}

/// `value - base` when it fits in a `u32`.
fn offset(value: u64, base: u64) -> Option<u32> {
    value
        .checked_sub(base)
        .and_then(|delta| u32::try_from(delta).ok())
}

/// A reservation id's offset from `base`, when it fits below [`SETTLED`].
fn id_offset(reservation: u64, base: u64) -> Option<u32> {
    offset(reservation, base).filter(|delta| *delta < SETTLED)
}

#[derive(Debug, Default)]
struct TokenState {
    spent_nanos: u64,
    spent_tokens: u64,
    in_flight: u64,
    reserved_tokens: u64,
    reserved_nanos: u64,
    periods: [PeriodUsage; 4],
    /// Requests admitted in the last [`WINDOW_MS`], oldest first.
    window: Window,
}

impl TokenState {
    fn roll(&mut self, now_ms: u64) {
        for period in Period::ALL {
            let start = period.start_ms(now_ms);
            let usage = &mut self.periods[period.index()];
            if usage.start_ms != start {
                *usage = PeriodUsage {
                    start_ms: start,
                    spend: PeriodSpend::default(),
                };
            }
        }
    }

    fn prune(&mut self, now_ms: u64) {
        while self
            .window
            .front()
            .is_some_and(|slot| slot.at_ms + WINDOW_MS <= now_ms)
        {
            self.window.pop_front();
        }
        self.window.shrink_when_sparse();
    }

    fn window_tokens(&self) -> u64 {
        self.window.tokens()
    }

    fn unhold(&mut self, estimate: Estimate) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.reserved_tokens = self.reserved_tokens.saturating_sub(estimate.tokens);
        self.reserved_nanos = self.reserved_nanos.saturating_sub(estimate.cost_nanos);
    }

    fn commit(&mut self, actual: Actual, now_ms: u64) {
        self.roll(now_ms);
        self.spent_nanos = self.spent_nanos.saturating_add(actual.cost_nanos);
        self.spent_tokens = self.spent_tokens.saturating_add(actual.tokens);
        for usage in &mut self.periods {
            usage.spend.requests = usage.spend.requests.saturating_add(1);
            usage.spend.tokens = usage.spend.tokens.saturating_add(actual.tokens);
            usage.spend.cost_nanos = usage.spend.cost_nanos.saturating_add(actual.cost_nanos);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    token_id: i64,
    estimate: Estimate,
    admitted_ms: u64,
}

/// Whether `used` plus this request stays within `limit`.
/// A budget refusal's figures, formatted in the budget's unit.
pub struct BudgetFigures {
    /// Nothing is left (spent and held reach the budget).
    pub used: bool,
    pub spent: String,
    pub budget: String,
    pub left: String,
    pub reserved: String,
    pub wanted: String,
}

/// Why a budget refused: spent, or merely smaller than what this request
/// may cost (then a smaller `max_tokens` may pass; "exhausted" would have
/// sent the client to an admin for nothing).
pub fn budget_message(figures: BudgetFigures) -> String {
    let BudgetFigures {
        used,
        spent,
        budget,
        left,
        reserved,
        wanted,
    } = figures;
    if used {
        format!(
            "token budget exhausted: {spent} spent of {budget} ({reserved} reserved by requests \
             in flight); the budget does not reset, an admin must raise it"
        )
    } else {
        format!(
            "token budget too small for this request: {left} left of {budget} ({spent} spent, \
             {reserved} reserved by requests in flight), and this request may need up to \
             {wanted}; ask for fewer tokens (max_tokens) or have an admin raise the budget"
        )
    }
}

fn fits(used: u64, estimate: u64, limit: u64) -> bool {
    used.saturating_add(estimate.max(1)) <= limit
}

/// One of a token's limits that instances share (see [`Shares`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SharedLimit {
    Rpm,
    Tpm,
    Parallel,
    /// The quota at this index of [`Limits::quotas`].
    Quota(usize),
}

/// This instance's shares of a token's limits, when instances enforce them
/// together: each instance leases part of a limit from the database and
/// admits within it, so the instances together never pass the limit. `None`
/// leaves a limit unshared (the instance enforces the whole limit alone).
/// A share counts the same units as its limit: requests in the sliding
/// minute (RPM), tokens in it (TPM), requests in flight, and the quota's
/// unit in the current period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shares {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
    /// Aligned with [`Limits::quotas`]; missing entries are unshared.
    pub quotas: Vec<Option<u64>>,
    /// No more can be leased: a share that stops a request refuses it.
    pub last_word: bool,
}

/// Why [`TokenLimits::admit_shared`] did not admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// A limit itself refuses: the answer for the client.
    Refused(Refusal),
    /// This instance's share of `limit` is `need` short for the request.
    Share { limit: SharedLimit, need: u64 },
}

impl Shortfall {
    /// The refusal; a share shortfall (only possible with shares given)
    /// reads as its limit reached.
    pub fn into_refusal(self) -> Refusal {
        match self {
            Shortfall::Refused(refusal) => refusal,
            Shortfall::Share { .. } => Refusal {
                limit: Limit::Parallel,
                status: 429,
                retry_after_ms: Some(PARALLEL_RETRY_MS),
                message: "rate limit reached".to_owned(),
            },
        }
    }
}

impl From<Refusal> for Shortfall {
    fn from(refusal: Refusal) -> Self {
        Shortfall::Refused(refusal)
    }
}

/// What a limit can take on this instance: the limit, or the instance's
/// share of it when smaller; and whether the share is what binds.
fn capacity(limit: u64, share: Option<u64>) -> (u64, bool) {
    match share {
        Some(share) if share < limit => (share, true),
        _ => (limit, false),
    }
}

/// The limits engine for all tokens of one instance.
#[derive(Debug)]
pub struct TokenLimits {
    reservation_ttl_ms: u64,
    /// The latest `now_ms` seen: time never runs backwards inside the engine.
    clock_ms: u64,
    next_id: u64,
    tokens: HashMap<i64, TokenState>,
    holds: HashMap<u64, Hold>,
}

impl TokenLimits {
    /// `reservation_ttl_ms`: how long a reservation may stay unsettled before
    /// [`Self::expire`] drops it. Make it longer than the longest request
    /// (streams included), or live requests lose their holds.
    pub fn new(reservation_ttl_ms: u64) -> Self {
        TokenLimits {
            reservation_ttl_ms,
            clock_ms: 0,
            next_id: 0,
            tokens: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    /// Callers read the clock before their message reaches the engine, so
    /// times may arrive slightly out of order; the engine uses the latest
    /// time it has seen instead, so a period never rolls back (which would
    /// forget its spend) and the rate window stays ordered.
    fn tick(&mut self, now_ms: u64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.clock_ms
    }

    /// Replaces a token's committed spend (lifetime and current periods) with
    /// the stored figures, at start or when another instance's spend is
    /// reloaded. Outstanding reservations are kept.
    pub fn load_committed(&mut self, token_id: i64, committed: &Committed, now_ms: u64) {
        let now_ms = self.tick(now_ms);
        let state = self.tokens.entry(token_id).or_default();
        state.spent_nanos = committed.spent_nanos;
        state.spent_tokens = committed.spent_tokens;
        for period in Period::ALL {
            state.periods[period.index()] = PeriodUsage {
                start_ms: period.start_ms(now_ms),
                spend: PeriodSpend::default(),
            };
        }
        for &(period, spend) in &committed.periods {
            state.periods[period.index()].spend = spend;
        }
    }

    /// Forgets a deleted token's state. Its outstanding reservations can
    /// still be settled or released (they are then charged to a fresh state).
    pub fn forget(&mut self, token_id: i64) {
        self.tokens.remove(&token_id);
    }

    /// Checks every limit against committed spend, outstanding reservations
    /// and `estimate` together; on success holds the estimate and returns the handle to
    /// settle or release.
    pub fn admit(
        &mut self,
        token_id: i64,
        limits: &Limits,
        estimate: Estimate,
        now_ms: u64,
    ) -> Result<Reservation, Refusal> {
        self.admit_within(token_id, limits, None, estimate, now_ms)
            .map_err(Shortfall::into_refusal)
    }

    /// [`Self::admit`] for a token whose limits several instances share:
    /// each shared limit admits only within this instance's `shares` of it
    /// (and the limit itself). When a share is what stops the request, the
    /// answer is [`Shortfall::Share`] with how much more of it the request
    /// needs, so the caller can lease more and try again; with
    /// `shares.last_word` set it is the refusal the client sees instead.
    pub fn admit_shared(
        &mut self,
        token_id: i64,
        limits: &Limits,
        shares: &Shares,
        estimate: Estimate,
        now_ms: u64,
    ) -> Result<Reservation, Shortfall> {
        self.admit_within(token_id, limits, Some(shares), estimate, now_ms)
    }

    fn admit_within(
        &mut self,
        token_id: i64,
        limits: &Limits,
        shares: Option<&Shares>,
        estimate: Estimate,
        now_ms: u64,
    ) -> Result<Reservation, Shortfall> {
        let now_ms = self.tick(now_ms);
        let state = self.tokens.entry(token_id).or_default();
        state.roll(now_ms);
        state.prune(now_ms);
        check(state, limits, shares, estimate, now_ms)?;

        let id = self.next_id;
        self.next_id += 1;
        state.in_flight += 1;
        state.reserved_tokens = state.reserved_tokens.saturating_add(estimate.tokens);
        state.reserved_nanos = state.reserved_nanos.saturating_add(estimate.cost_nanos);
        if limits.rpm.is_some() || limits.tpm.is_some() {
            state.window.push_back(Hit {
                at_ms: now_ms,
                tokens: estimate.tokens,
                reservation: id,
            });
        }
        self.holds.insert(
            id,
            Hold {
                token_id,
                estimate,
                admitted_ms: now_ms,
            },
        );
        Ok(Reservation {
            id,
            token_id,
            estimate,
        })
    }

    /// Replaces the reservation's estimate with the actual spend everywhere
    /// (budgets, quotas of the current periods, the TPM window) and frees its
    /// parallel slot. The actual may exceed the estimate: that is the bounded
    /// overshoot of the module docs.
    pub fn settle(&mut self, reservation: Reservation, actual: Actual, now_ms: u64) -> Settled {
        let now_ms = self.tick(now_ms);
        let held = self.holds.remove(&reservation.id);
        let state = self.tokens.entry(reservation.token_id).or_default();
        if let Some(hold) = held {
            state.unhold(hold.estimate);
        }
        state.commit(actual, now_ms);
        state.prune(now_ms);
        state.window.set_tokens(reservation.id, actual.tokens);
        if held.is_some() {
            Settled::OnTime
        } else {
            Settled::AfterExpiry
        }
    }

    /// Frees everything a request held that never reached an upstream:
    /// its parallel slot, its reserved estimate and its place in the RPM/TPM
    /// window. Returns false if the reservation had already expired (its
    /// holds were freed then; its window entry is removed now).
    pub fn release(&mut self, reservation: Reservation, now_ms: u64) -> bool {
        let now_ms = self.tick(now_ms);
        let held = self.holds.remove(&reservation.id);
        if let Some(state) = self.tokens.get_mut(&reservation.token_id) {
            if let Some(hold) = held {
                state.unhold(hold.estimate);
            }
            state.window.remove(reservation.id);
            state.prune(now_ms);
        }
        held.is_some()
    }

    /// Drops reservations admitted at least the TTL ago (crashed or forgotten
    /// requests), freeing their parallel slots and reserved estimates. Returns
    /// how many expired.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let now_ms = self.tick(now_ms);
        let ttl = self.reservation_ttl_ms;
        let mut expired = Vec::new();
        self.holds.retain(|_, hold| {
            let keep = hold.admitted_ms.saturating_add(ttl) > now_ms;
            if !keep {
                expired.push(*hold);
            }
            keep
        });
        for hold in &expired {
            if let Some(state) = self.tokens.get_mut(&hold.token_id) {
                state.unhold(hold.estimate);
            }
        }
        expired.len()
    }

    /// Reservations currently held, all tokens.
    pub fn outstanding(&self) -> usize {
        self.holds.len()
    }

    /// A token's figures as the engine sees them (for the admin API and
    /// tests).
    pub fn usage(&self, token_id: i64, now_ms: u64) -> TokenUsage {
        let now_ms = now_ms.max(self.clock_ms);
        let Some(state) = self.tokens.get(&token_id) else {
            return TokenUsage::default();
        };
        let mut periods = [PeriodSpend::default(); 4];
        for period in Period::ALL {
            let usage = state.periods[period.index()];
            if usage.start_ms == period.start_ms(now_ms) {
                periods[period.index()] = usage.spend;
            }
        }
        let live = |slot: &Slot| slot.at_ms + WINDOW_MS > now_ms;
        TokenUsage {
            spent_nanos: state.spent_nanos,
            spent_tokens: state.spent_tokens,
            in_flight: state.in_flight,
            reserved_tokens: state.reserved_tokens,
            reserved_nanos: state.reserved_nanos,
            window_requests: state
                .window
                .iter()
                .filter(live)
                .map(|slot| slot.requests)
                .sum(),
            window_tokens: state
                .window
                .iter()
                .filter(live)
                .fold(0u64, |sum, slot| sum.saturating_add(slot.tokens)),
            periods,
        }
    }
}

/// A token's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub spent_nanos: u64,
    pub spent_tokens: u64,
    pub in_flight: u64,
    pub reserved_tokens: u64,
    pub reserved_nanos: u64,
    /// Requests in the sliding minute.
    pub window_requests: u64,
    /// Tokens in the sliding minute (estimates until settled).
    pub window_tokens: u64,
    /// Settled spend of the current minute, hour, day and month.
    pub periods: [PeriodSpend; 4],
}

impl TokenUsage {
    pub fn period(&self, period: Period) -> PeriodSpend {
        self.periods[period.index()]
    }
}

/// Every limit against `state` (rolled and pruned at `now_ms`), each within
/// this instance's share of it when `shares` are given.
fn check(
    state: &TokenState,
    limits: &Limits,
    shares: Option<&Shares>,
    estimate: Estimate,
    now_ms: u64,
) -> Result<(), Shortfall> {
    let last_word = shares.is_none_or(|shares| shares.last_word);
    // A share that binds asks for a lease first; the limit itself, or a
    // share when nothing more can be leased, refuses.
    let short = |limit: SharedLimit, used: u64, want: u64, cap: u64| -> Option<Shortfall> {
        (!last_word).then(|| Shortfall::Share {
            limit,
            need: used.saturating_add(want.max(1)).saturating_sub(cap),
        })
    };
    if let Some(budget) = limits.budget_nanos {
        let used = state.spent_nanos.saturating_add(state.reserved_nanos);
        if !fits(used, estimate.cost_nanos, budget) {
            return Err(Refusal {
                limit: Limit::Budget {
                    kind: BudgetKind::Cost,
                },
                status: 402,
                retry_after_ms: None,
                message: budget_message(BudgetFigures {
                    used: used >= budget,
                    spent: usd(state.spent_nanos),
                    budget: usd(budget),
                    left: usd(budget.saturating_sub(used)),
                    reserved: usd(state.reserved_nanos),
                    wanted: usd(estimate.cost_nanos),
                }),
            }
            .into());
        }
    }
    if let Some(budget) = limits.budget_tokens {
        let used = state.spent_tokens.saturating_add(state.reserved_tokens);
        if !fits(used, estimate.tokens, budget) {
            return Err(Refusal {
                limit: Limit::Budget {
                    kind: BudgetKind::Tokens,
                },
                status: 402,
                retry_after_ms: None,
                message: budget_message(BudgetFigures {
                    used: used >= budget,
                    spent: format!("{} tokens", state.spent_tokens),
                    budget: format!("{budget} tokens"),
                    left: format!("{} tokens", budget.saturating_sub(used)),
                    reserved: format!("{} tokens", state.reserved_tokens),
                    wanted: format!("{} tokens", estimate.tokens),
                }),
            }
            .into());
        }
    }
    for (index, quota) in limits.quotas.iter().enumerate() {
        let spend = state.periods[quota.period.index()].spend;
        let (used, want, unit) = match quota.kind {
            QuotaKind::Requests => (
                spend.requests.saturating_add(state.in_flight),
                1,
                "requests",
            ),
            QuotaKind::Tokens => (
                spend.tokens.saturating_add(state.reserved_tokens),
                estimate.tokens,
                "tokens",
            ),
            QuotaKind::Cost => (
                spend.cost_nanos.saturating_add(state.reserved_nanos),
                estimate.cost_nanos,
                "cost",
            ),
        };
        let share = shares.and_then(|shares| shares.quotas.get(index).copied().flatten());
        let (cap, shared) = capacity(quota.limit, share);
        if !fits(used, want, cap) {
            if shared
                && fits(used, want, quota.limit)
                && let Some(short) = short(SharedLimit::Quota(index), used, want, cap)
            {
                return Err(short);
            }
            let end = quota.period.end_ms(now_ms);
            let limit = match quota.kind {
                QuotaKind::Cost => usd(quota.limit),
                _ => format!("{} {unit}", quota.limit),
            };
            return Err(Refusal {
                limit: Limit::Quota {
                    period: quota.period,
                    kind: quota.kind,
                },
                status: 429,
                retry_after_ms: Some(end - now_ms),
                message: format!(
                    "{} {} quota of {limit} reached; it resets at {}",
                    quota.period.adjective(),
                    match quota.kind {
                        QuotaKind::Requests => "request",
                        QuotaKind::Tokens => "token",
                        QuotaKind::Cost => "cost",
                    },
                    utc(end),
                ),
            }
            .into());
        }
    }
    if let Some(tpm) = limits.tpm {
        let used = state.window_tokens();
        let (cap, shared) = capacity(tpm, shares.and_then(|shares| shares.tpm));
        if !fits(used, estimate.tokens, cap) {
            if shared
                && fits(used, estimate.tokens, tpm)
                && let Some(short) = short(SharedLimit::Tpm, used, estimate.tokens, cap)
            {
                return Err(short);
            }
            // Wait until enough of the window's tokens have aged out (of
            // this instance's window: what other instances hold leaves
            // within the minute too, so a minute is the most to wait).
            let excess = used.saturating_add(estimate.tokens.max(1)) - cap;
            let mut freed = 0u64;
            let mut wait = WINDOW_MS;
            for slot in state.window.iter() {
                freed = freed.saturating_add(slot.tokens);
                if freed >= excess {
                    wait = slot.at_ms + WINDOW_MS - now_ms;
                    break;
                }
            }
            let hint = if estimate.tokens > tpm {
                format!(
                    "; this request's estimate of {} tokens alone exceeds it",
                    estimate.tokens
                )
            } else {
                String::new()
            };
            let counted = if shared {
                "across instances".to_owned()
            } else {
                format!("{used} in the last 60 s")
            };
            return Err(Refusal {
                limit: Limit::Tpm,
                status: 429,
                retry_after_ms: Some(wait),
                message: format!(
                    "token rate limit of {tpm} tokens per minute reached ({counted}{hint}); \
                     retry in {} s",
                    wait.div_ceil(1000).max(1),
                ),
            }
            .into());
        }
    }
    if let Some(rpm) = limits.rpm {
        let rpm = u64::from(rpm);
        let used = state.window.len();
        let (cap, shared) = capacity(rpm, shares.and_then(|shares| shares.rpm));
        if !fits(used, 1, cap) {
            if shared
                && fits(used, 1, rpm)
                && let Some(short) = short(SharedLimit::Rpm, used, 1, cap)
            {
                return Err(short);
            }
            // The request whose leaving brings the count below the limit
            // (of this instance's requests; at most a minute).
            let blocking = (used + 1).saturating_sub(cap);
            let wait = blocking
                .checked_sub(1)
                .and_then(|index| state.window.admitted_ms(index))
                .map_or(WINDOW_MS, |at_ms| at_ms + WINDOW_MS - now_ms);
            return Err(Refusal {
                limit: Limit::Rpm,
                status: 429,
                retry_after_ms: Some(wait),
                message: format!(
                    "request rate limit of {rpm} requests per minute reached; retry in {} s",
                    wait.div_ceil(1000).max(1),
                ),
            }
            .into());
        }
    }
    if let Some(max) = limits.max_parallel {
        let max = u64::from(max);
        let (cap, shared) = capacity(max, shares.and_then(|shares| shares.parallel));
        if !fits(state.in_flight, 1, cap) {
            if shared
                && fits(state.in_flight, 1, max)
                && let Some(short) = short(SharedLimit::Parallel, state.in_flight, 1, cap)
            {
                return Err(short);
            }
            let counted = if shared {
                "across instances".to_owned()
            } else {
                format!("{} in flight", state.in_flight)
            };
            return Err(Refusal {
                limit: Limit::Parallel,
                status: 429,
                retry_after_ms: Some(PARALLEL_RETRY_MS),
                message: format!(
                    "parallel request limit of {max} reached ({counted}); retry when one finishes",
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// Nano-USD as dollars, at least two decimals, trailing zeros trimmed.
fn usd(nanos: u64) -> String {
    let frac = format!("{:09}", nanos % NANOS_PER_USD);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_owned()
    };
    format!("${}.{frac}", nanos / NANOS_PER_USD)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / DAY_MS) as i64);
    let secs = (ms % DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 600_000;
    /// 2024-01-01 00:00:00 UTC.
    const JAN_1_2024: u64 = 1_704_067_200_000;
    const JAN_31_2024: u64 = 1_706_659_200_000;
    const FEB_1_2024: u64 = 1_706_745_600_000;
    const FEB_29_2024: u64 = 1_709_164_800_000;
    const MAR_1_2024: u64 = 1_709_251_200_000;
    const FEB_28_2023: u64 = 1_677_542_400_000;
    const MAR_1_2023: u64 = 1_677_628_800_000;
    const DEC_31_2024: u64 = 1_735_603_200_000;
    const JAN_1_2025: u64 = 1_735_689_600_000;
    const FEB_28_2100: u64 = 4_107_456_000_000;
    const MAR_1_2100: u64 = 4_107_542_400_000;
    /// 2024-01-01 00:00:00 UTC plus a few hours, minutes and seconds, so that
    /// no period boundary is near unless a test goes there.
    const T0: u64 = JAN_1_2024 + 5 * HOUR_MS + 7 * MINUTE_MS + 13_000;

    fn est(tokens: u64, cost_nanos: u64) -> Estimate {
        Estimate { tokens, cost_nanos }
    }

    fn act(tokens: u64, cost_nanos: u64) -> Actual {
        Actual { tokens, cost_nanos }
    }

    fn quota(period: Period, kind: QuotaKind, limit: u64) -> Limits {
        Limits {
            quotas: vec![Quota {
                period,
                kind,
                limit,
            }],
            ..Limits::default()
        }
    }

    fn refused(result: Result<Reservation, Refusal>) -> Refusal {
        match result {
            Ok(reservation) => panic!("admitted unexpectedly: {reservation:?}"),
            Err(refusal) => refusal,
        }
    }

    fn admitted(result: Result<Reservation, Refusal>) -> Reservation {
        match result {
            Ok(reservation) => reservation,
            Err(refusal) => panic!("refused unexpectedly: {}", refusal.message),
        }
    }

    // Calendar arithmetic.

    #[test]
    fn civil_dates_match_known_unix_days() {
        for (ms, date) in [
            (0, (1970, 1, 1)),
            (JAN_1_2024, (2024, 1, 1)),
            (FEB_29_2024, (2024, 2, 29)),
            (MAR_1_2023, (2023, 3, 1)),
            (JAN_1_2025, (2025, 1, 1)),
            (MAR_1_2100, (2100, 3, 1)),
            (951_782_400_000, (2000, 2, 29)),
        ] {
            let day = (ms / DAY_MS) as i64;
            assert_eq!(civil_from_days(day), date);
            assert_eq!(days_from_civil(date.0, date.1, date.2), day);
        }
    }

    #[test]
    fn civil_round_trips_every_day_for_two_centuries() {
        for day in 0..(200 * 366) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn minute_hour_and_day_periods_are_aligned_to_utc() {
        let t = JAN_1_2024 + 13 * HOUR_MS + 42 * MINUTE_MS + 17_345;
        assert_eq!(
            Period::Minute.start_ms(t),
            JAN_1_2024 + 13 * HOUR_MS + 42 * MINUTE_MS
        );
        assert_eq!(
            Period::Minute.end_ms(t),
            JAN_1_2024 + 13 * HOUR_MS + 43 * MINUTE_MS
        );
        assert_eq!(Period::Hour.start_ms(t), JAN_1_2024 + 13 * HOUR_MS);
        assert_eq!(Period::Hour.end_ms(t), JAN_1_2024 + 14 * HOUR_MS);
        assert_eq!(Period::Day.start_ms(t), JAN_1_2024);
        assert_eq!(Period::Day.end_ms(t), JAN_1_2024 + DAY_MS);
        // A boundary instant belongs to the period it starts.
        assert_eq!(
            Period::Hour.start_ms(JAN_1_2024 + HOUR_MS),
            JAN_1_2024 + HOUR_MS
        );
        assert_eq!(
            Period::Day.end_ms(JAN_1_2024 + DAY_MS - 1),
            JAN_1_2024 + DAY_MS
        );
    }

    #[test]
    fn month_periods_follow_the_calendar() {
        // January has 31 days: Jan 31 is still January, Feb 1 starts February.
        assert_eq!(Period::Month.start_ms(JAN_31_2024 + DAY_MS - 1), JAN_1_2024);
        assert_eq!(Period::Month.end_ms(JAN_31_2024), FEB_1_2024);
        assert_eq!(Period::Month.start_ms(FEB_1_2024), FEB_1_2024);
        // Leap year: Feb 29 is February; March starts after it.
        assert_eq!(
            Period::Month.start_ms(FEB_29_2024 + 12 * HOUR_MS),
            FEB_1_2024
        );
        assert_eq!(Period::Month.end_ms(FEB_29_2024), MAR_1_2024);
        // Not a leap year: Feb 28 is the last day.
        assert_eq!(Period::Month.end_ms(FEB_28_2023), MAR_1_2023);
        assert_eq!(MAR_1_2023 - FEB_28_2023, DAY_MS);
        // 2100 is not a leap year (divisible by 100, not by 400).
        assert_eq!(Period::Month.end_ms(FEB_28_2100), MAR_1_2100);
        assert_eq!(MAR_1_2100 - FEB_28_2100, DAY_MS);
        // December rolls into the next year.
        assert_eq!(Period::Month.end_ms(DEC_31_2024 + DAY_MS - 1), JAN_1_2025);
        assert_eq!(Period::Month.start_ms(JAN_1_2025), JAN_1_2025);
    }

    // No limits.

    #[test]
    fn no_limits_admit_everything_and_still_account() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits::default();
        let r = admitted(engine.admit(1, &limits, est(10, 20), T0));
        assert_eq!(engine.settle(r, act(7, 9), T0 + 5), Settled::OnTime);
        let usage = engine.usage(1, T0 + 5);
        assert_eq!((usage.spent_tokens, usage.spent_nanos), (7, 9));
        assert_eq!(usage.in_flight, 0);
        assert_eq!(usage.period(Period::Day).requests, 1);
        // Without RPM/TPM limits no window is kept.
        assert_eq!(usage.window_requests, 0);
    }

    // RPM.

    #[test]
    fn rpm_refuses_the_request_past_the_limit_with_429() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(3),
            ..Limits::default()
        };
        for i in 0..3 {
            admitted(engine.admit(1, &limits, est(1, 1), T0 + i * 1000));
        }
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0 + 10_000));
        assert_eq!(refusal.limit, Limit::Rpm);
        assert_eq!(refusal.status, 429);
        // The first request (at T0) leaves the window at T0 + 60 s.
        assert_eq!(refusal.retry_after_ms, Some(50_000));
        assert_eq!(refusal.retry_after_secs(), Some(50));
        assert!(
            refusal.message.contains("3 requests per minute"),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("retry in 50 s"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn rpm_window_slides_exactly_at_sixty_seconds() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        admitted(engine.admit(1, &limits, est(1, 1), T0));
        admitted(engine.admit(1, &limits, est(1, 1), T0 + 30_000));
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0 + WINDOW_MS - 1));
        assert_eq!(refusal.retry_after_ms, Some(1));
        assert_eq!(refusal.retry_after_secs(), Some(1));
        // The first request has left; the one at +30 s is still inside.
        admitted(engine.admit(1, &limits, est(1, 1), T0 + WINDOW_MS));
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0 + WINDOW_MS + 1));
        assert_eq!(refusal.retry_after_ms, Some(30_000 - 1));
    }

    #[test]
    fn rpm_is_sliding_not_fixed_so_no_double_burst_at_a_minute_boundary() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(5),
            ..Limits::default()
        };
        let boundary = Period::Minute.end_ms(T0);
        for _ in 0..5 {
            admitted(engine.admit(1, &limits, est(1, 1), boundary - 1));
        }
        // A fixed window would admit 5 more at the boundary.
        let refusal = refused(engine.admit(1, &limits, est(1, 1), boundary));
        assert_eq!(refusal.retry_after_ms, Some(WINDOW_MS - 1));
    }

    #[test]
    fn settled_requests_still_count_in_rpm() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(1, 1), T0));
        engine.settle(r, act(1, 1), T0 + 100);
        assert_eq!(
            refused(engine.admit(1, &limits, est(1, 1), T0 + 200)).limit,
            Limit::Rpm
        );
    }

    // TPM.

    #[test]
    fn tpm_counts_estimates_of_requests_in_flight() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(1000),
            ..Limits::default()
        };
        admitted(engine.admit(1, &limits, est(400, 0), T0));
        admitted(engine.admit(1, &limits, est(600, 0), T0 + 5_000));
        let refusal = refused(engine.admit(1, &limits, est(1, 0), T0 + 6_000));
        assert_eq!(refusal.limit, Limit::Tpm);
        assert_eq!(refusal.status, 429);
        // Freeing the first 400 tokens is enough for 1 more.
        assert_eq!(refusal.retry_after_ms, Some(54_000));
        assert!(
            refusal.message.contains("1000 tokens per minute"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn tpm_retry_after_waits_for_enough_tokens_to_leave() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(1000),
            ..Limits::default()
        };
        admitted(engine.admit(1, &limits, est(300, 0), T0));
        admitted(engine.admit(1, &limits, est(300, 0), T0 + 10_000));
        admitted(engine.admit(1, &limits, est(300, 0), T0 + 20_000));
        // 900 used; 500 more needs 400 freed: the first two must leave.
        let refusal = refused(engine.admit(1, &limits, est(500, 0), T0 + 30_000));
        assert_eq!(refusal.retry_after_ms, Some(40_000));
        refused(engine.admit(1, &limits, est(500, 0), T0 + 69_999));
        admitted(engine.admit(1, &limits, est(500, 0), T0 + 70_000));
    }

    #[test]
    fn tpm_window_rolls_over() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(100),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(100, 0), T0));
        engine.settle(r, act(100, 0), T0 + 2_000);
        refused(engine.admit(1, &limits, est(1, 0), T0 + WINDOW_MS - 1));
        assert_eq!(engine.usage(1, T0 + WINDOW_MS - 1).window_tokens, 100);
        assert_eq!(engine.usage(1, T0 + WINDOW_MS).window_tokens, 0);
        admitted(engine.admit(1, &limits, est(100, 0), T0 + WINDOW_MS));
    }

    #[test]
    fn window_entries_stay_exact_when_their_bases_move() {
        let mut window = Window::default();
        // The furthest offsets an entry holds: u32 for times, below the
        // settled flag for reservation ids.
        let far = u64::from(u32::MAX);
        let far_id = u64::from(SETTLED - 1);
        let hit = |at_ms, reservation, tokens| Hit {
            at_ms,
            tokens,
            reservation,
        };
        window.push_back(hit(1_000, 7, 1));
        window.push_back(hit(1_000 + far, 7 + far_id, 2));
        assert_eq!(window.pop_front().and_then(|h| h.reservation), Some(7));
        // Both offsets from the old bases (7 and 1,000) are past what fits: the
        // bases move to the front entry and every figure reads back exactly.
        window.push_back(hit(1_010 + far, 12 + far_id, 3));
        let read: Vec<(u64, Option<u64>, u64)> = window
            .iter()
            .map(|h| (h.at_ms, h.reservation, h.tokens))
            .collect();
        assert_eq!(
            read,
            vec![
                (1_000 + far, Some(7 + far_id), 2),
                (1_010 + far, Some(12 + far_id), 3)
            ]
        );
        window.set_tokens(7 + far_id, 20);
        window.set_tokens(7, 99);
        assert_eq!(
            window.tokens(),
            23,
            "a reservation that left changes nothing"
        );
        window.remove(12 + far_id);
        assert_eq!(window.tokens(), 20);
        assert_eq!(window.len(), 1);
        assert_eq!(window.front().map(|h| h.at_ms), Some(1_000 + far));
    }

    #[test]
    fn settled_requests_of_one_millisecond_share_one_entry() {
        // 200 requests a millisecond for two seconds, each settled before
        // the next arrives: the window counts all 400,000 exactly, but holds
        // them in entries per millisecond, not per request (an entry per
        // request made the every-limit token's window the largest block of
        // the gateway's peak RSS, bench/README.md).
        let mut window = Window::default();
        let mut reservation = 0;
        for ms in 0..2_000u64 {
            for _ in 0..200 {
                reservation += 1;
                window.push_back(Hit {
                    at_ms: 1_000 + ms,
                    tokens: 3,
                    reservation,
                });
                window.set_tokens(reservation, 5);
            }
        }
        assert_eq!(window.len(), 400_000);
        assert_eq!(window.tokens(), 2_000_000);
        assert!(
            window.entries.capacity() <= 8_192,
            "{} entries' room for 2,000 milliseconds",
            window.entries.capacity()
        );
    }

    #[test]
    fn a_compacted_window_answers_like_a_list_of_every_request() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        // The reference: every request on its own, as the window held them
        // before settled ones were merged.
        struct Request {
            at_ms: u64,
            tokens: u64,
            reservation: u64,
            settled: bool,
        }
        let mut rng = SmallRng::seed_from_u64(11);
        let mut window = Window::default();
        let mut list: Vec<Request> = Vec::new();
        let (mut now_ms, mut next_id) = (1_000u64, 1u64);
        let mut fewest_entries_per_request = 1.0f64;
        for _ in 0..60_000 {
            now_ms += u64::from(rng.random_ratio(1, 8));
            match rng.random_range(0..10) {
                0..5 => {
                    let tokens = rng.random_range(0..50);
                    window.push_back(Hit {
                        at_ms: now_ms,
                        tokens,
                        reservation: next_id,
                    });
                    list.push(Request {
                        at_ms: now_ms,
                        tokens,
                        reservation: next_id,
                        settled: false,
                    });
                    next_id += 1;
                }
                5..9 => {
                    // Settles (or, one time in four, releases) a request in
                    // flight, mostly a recent one.
                    let in_flight: Vec<usize> = (0..list.len())
                        .rev()
                        .filter(|i| !list[*i].settled)
                        .take(8)
                        .collect();
                    let Some(&index) = in_flight.get(rng.random_range(0..8)) else {
                        continue;
                    };
                    if rng.random_ratio(1, 4) {
                        window.remove(list[index].reservation);
                        list.remove(index);
                    } else {
                        let tokens = rng.random_range(0..50);
                        window.set_tokens(list[index].reservation, tokens);
                        list[index].tokens = tokens;
                        list[index].settled = true;
                    }
                }
                _ => {
                    let cut = now_ms.saturating_sub(rng.random_range(100..400));
                    while window.front().is_some_and(|slot| slot.at_ms <= cut) {
                        window.pop_front();
                    }
                    // The window drops whole entries: so does the list.
                    list.retain(|request| request.at_ms > cut);
                }
            }
            assert_eq!(window.len(), list.len() as u64);
            assert_eq!(
                window.tokens,
                list.iter().map(|r| u128::from(r.tokens)).sum()
            );
            if list.len() >= 100 {
                fewest_entries_per_request = f64::min(
                    fewest_entries_per_request,
                    window.entries.len() as f64 / list.len() as f64,
                );
            }
        }
        assert!(
            fewest_entries_per_request < 0.5,
            "settled requests were not merged: {fewest_entries_per_request} entries per request"
        );
        // Each slot is a run of the list: same millisecond, same tokens.
        let mut listed = list.iter();
        for slot in window.iter() {
            let run: Vec<&Request> = listed.by_ref().take(slot.requests as usize).collect();
            assert_eq!(run.len() as u64, slot.requests);
            assert!(run.iter().all(|request| request.at_ms == slot.at_ms));
            assert_eq!(
                run.iter().map(|request| request.tokens).sum::<u64>(),
                slot.tokens
            );
            if let Some(reservation) = slot.reservation {
                assert_eq!(run.len(), 1);
                assert_eq!(run[0].reservation, reservation);
            }
        }
        assert!(listed.next().is_none());
        for (index, request) in list.iter().enumerate() {
            assert_eq!(window.admitted_ms(index as u64), Some(request.at_ms));
        }
        assert_eq!(window.admitted_ms(list.len() as u64), None);
        for request in list.iter().filter(|request| !request.settled) {
            assert!(window.position(request.reservation).is_some());
        }
    }

    #[test]
    fn the_window_sum_follows_every_change() {
        let mut window = Window::default();
        let summed = |window: &Window| window.iter().map(|hit| u128::from(hit.tokens)).sum();
        for (id, tokens) in [(1, 10), (2, u64::MAX), (3, 7), (4, 0)] {
            window.push_back(Hit {
                at_ms: id,
                tokens,
                reservation: id,
            });
            assert_eq!(window.tokens, summed(&window));
        }
        assert_eq!(window.tokens(), u64::MAX, "a huge sum reads as saturated");
        window.set_tokens(2, 5);
        assert_eq!(window.tokens, summed(&window));
        assert_eq!(window.tokens(), 22);
        window.remove(3);
        assert_eq!(window.tokens(), 15);
        window.set_tokens(99, 1_000);
        assert_eq!(
            window.tokens(),
            15,
            "an unknown reservation changes nothing"
        );
        while window.pop_front().is_some() {
            assert_eq!(window.tokens, summed(&window));
        }
        assert_eq!(window.tokens(), 0);
    }

    #[test]
    fn tpm_settlement_replaces_the_estimate_in_the_window() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(1000),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(1000, 0), T0));
        refused(engine.admit(1, &limits, est(1, 0), T0 + 1));
        engine.settle(r, act(250, 0), T0 + 2);
        assert_eq!(engine.usage(1, T0 + 2).window_tokens, 250);
        admitted(engine.admit(1, &limits, est(750, 0), T0 + 3));
        refused(engine.admit(1, &limits, est(1, 0), T0 + 4));
    }

    #[test]
    fn tpm_estimate_larger_than_the_limit_says_so() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(100),
            ..Limits::default()
        };
        let refusal = refused(engine.admit(1, &limits, est(101, 0), T0));
        assert_eq!(refusal.limit, Limit::Tpm);
        assert_eq!(refusal.retry_after_ms, Some(WINDOW_MS));
        assert!(
            refusal.message.contains("alone exceeds"),
            "{}",
            refusal.message
        );
    }

    // Parallel.

    #[test]
    fn parallel_limit_counts_requests_in_flight() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            max_parallel: Some(2),
            ..Limits::default()
        };
        let a = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let b = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0));
        assert_eq!(refusal.limit, Limit::Parallel);
        assert_eq!(refusal.status, 429);
        assert_eq!(refusal.retry_after_ms, Some(PARALLEL_RETRY_MS));
        assert!(
            refusal.message.contains("parallel request limit of 2"),
            "{}",
            refusal.message
        );
        engine.settle(a, act(1, 1), T0 + 1);
        let _c = admitted(engine.admit(1, &limits, est(1, 1), T0 + 1));
        refused(engine.admit(1, &limits, est(1, 1), T0 + 1));
        assert!(engine.release(b, T0 + 2));
        admitted(engine.admit(1, &limits, est(1, 1), T0 + 2));
    }

    // Quotas.

    #[test]
    fn minute_request_quota_resets_exactly_at_the_minute() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Minute, QuotaKind::Requests, 2);
        let start = Period::Minute.start_ms(T0);
        let end = start + MINUTE_MS;
        for t in [start, start + 1] {
            let r = admitted(engine.admit(1, &limits, est(1, 1), t));
            engine.settle(r, act(1, 1), t);
        }
        let refusal = refused(engine.admit(1, &limits, est(1, 1), end - 1));
        assert_eq!(
            refusal.limit,
            Limit::Quota {
                period: Period::Minute,
                kind: QuotaKind::Requests
            }
        );
        assert_eq!(refusal.status, 429);
        assert_eq!(refusal.retry_after_ms, Some(1));
        assert!(
            refusal
                .message
                .contains("per-minute request quota of 2 requests"),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("2024-01-01 05:08:00 UTC"),
            "{}",
            refusal.message
        );
        admitted(engine.admit(1, &limits, est(1, 1), end));
    }

    #[test]
    fn request_quota_counts_requests_in_flight() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Day, QuotaKind::Requests, 2);
        let _a = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let _b = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0));
        assert_eq!(refusal.retry_after_ms, Some(JAN_1_2024 + DAY_MS - T0));
    }

    #[test]
    fn hourly_token_quota_resets_at_the_hour() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Hour, QuotaKind::Tokens, 1000);
        let end = Period::Hour.end_ms(T0);
        let r = admitted(engine.admit(1, &limits, est(800, 0), T0));
        engine.settle(r, act(900, 0), T0 + 1);
        // 900 settled; 101 does not fit, 100 does.
        let refusal = refused(engine.admit(1, &limits, est(101, 0), T0 + 2));
        assert_eq!(
            refusal.limit,
            Limit::Quota {
                period: Period::Hour,
                kind: QuotaKind::Tokens
            }
        );
        assert_eq!(refusal.retry_after_ms, Some(end - T0 - 2));
        assert!(
            refusal
                .message
                .contains("hourly token quota of 1000 tokens"),
            "{}",
            refusal.message
        );
        let r = admitted(engine.admit(1, &limits, est(100, 0), T0 + 2));
        engine.settle(r, act(100, 0), T0 + 3);
        refused(engine.admit(1, &limits, est(0, 0), end - 1));
        admitted(engine.admit(1, &limits, est(1000, 0), end));
    }

    #[test]
    fn daily_cost_quota_resets_at_midnight_utc() {
        let mut engine = TokenLimits::new(TTL);
        let dollar = NANOS_PER_USD;
        let limits = quota(Period::Day, QuotaKind::Cost, 5 * dollar);
        let midnight = JAN_1_2024 + DAY_MS;
        let r = admitted(engine.admit(1, &limits, est(0, 5 * dollar), midnight - 10));
        engine.settle(r, act(0, 5 * dollar), midnight - 5);
        let refusal = refused(engine.admit(1, &limits, est(0, 1), midnight - 1));
        assert_eq!(refusal.retry_after_ms, Some(1));
        assert!(
            refusal.message.contains("daily cost quota of $5.00"),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("2024-01-02 00:00:00 UTC"),
            "{}",
            refusal.message
        );
        admitted(engine.admit(1, &limits, est(0, 5 * dollar), midnight));
    }

    #[test]
    fn monthly_quota_resets_from_jan_31_to_feb_1() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Month, QuotaKind::Requests, 1);
        let r = admitted(engine.admit(1, &limits, est(1, 1), JAN_1_2024 + 1000));
        engine.settle(r, act(1, 1), JAN_1_2024 + 2000);
        let noon_31st = JAN_31_2024 + 12 * HOUR_MS;
        let refusal = refused(engine.admit(1, &limits, est(1, 1), noon_31st));
        assert_eq!(refusal.retry_after_ms, Some(12 * HOUR_MS));
        assert_eq!(refusal.retry_after_secs(), Some(12 * 3600));
        assert!(
            refusal.message.contains("monthly request quota"),
            "{}",
            refusal.message
        );
        assert!(
            refusal.message.contains("2024-02-01 00:00:00 UTC"),
            "{}",
            refusal.message
        );
        refused(engine.admit(1, &limits, est(1, 1), FEB_1_2024 - 1));
        admitted(engine.admit(1, &limits, est(1, 1), FEB_1_2024));
    }

    #[test]
    fn monthly_quota_holds_through_leap_day_and_resets_on_march_1() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Month, QuotaKind::Tokens, 100);
        let r = admitted(engine.admit(1, &limits, est(100, 0), FEB_1_2024));
        engine.settle(r, act(100, 0), FEB_1_2024);
        let refusal = refused(engine.admit(1, &limits, est(1, 0), FEB_29_2024 + 23 * HOUR_MS));
        assert_eq!(refusal.retry_after_ms, Some(HOUR_MS));
        assert!(
            refusal.message.contains("2024-03-01 00:00:00 UTC"),
            "{}",
            refusal.message
        );
        refused(engine.admit(1, &limits, est(1, 0), MAR_1_2024 - 1));
        admitted(engine.admit(1, &limits, est(100, 0), MAR_1_2024));
    }

    #[test]
    fn daily_quota_resets_on_leap_day() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Day, QuotaKind::Requests, 1);
        let r = admitted(engine.admit(1, &limits, est(1, 1), FEB_29_2024 - HOUR_MS));
        engine.settle(r, act(1, 1), FEB_29_2024 - HOUR_MS);
        refused(engine.admit(1, &limits, est(1, 1), FEB_29_2024 - 1));
        let r = admitted(engine.admit(1, &limits, est(1, 1), FEB_29_2024));
        engine.settle(r, act(1, 1), FEB_29_2024);
        let refusal = refused(engine.admit(1, &limits, est(1, 1), MAR_1_2024 - 1));
        assert_eq!(refusal.retry_after_ms, Some(1));
        admitted(engine.admit(1, &limits, est(1, 1), MAR_1_2024));
    }

    #[test]
    fn monthly_quota_resets_from_december_into_january() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Month, QuotaKind::Cost, 1000);
        let r = admitted(engine.admit(1, &limits, est(0, 1000), DEC_31_2024));
        engine.settle(r, act(0, 1000), DEC_31_2024);
        let refusal = refused(engine.admit(1, &limits, est(0, 1), JAN_1_2025 - 1));
        assert!(
            refusal.message.contains("2025-01-01 00:00:00 UTC"),
            "{}",
            refusal.message
        );
        admitted(engine.admit(1, &limits, est(0, 1000), JAN_1_2025));
    }

    #[test]
    fn spend_counts_in_the_period_it_settles_in_and_holds_straddle_boundaries() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Minute, QuotaKind::Tokens, 100);
        let end = Period::Minute.end_ms(T0);
        let r = admitted(engine.admit(1, &limits, est(100, 0), end - 10));
        // The hold guards the new minute too.
        refused(engine.admit(1, &limits, est(1, 0), end));
        engine.settle(r, act(60, 0), end + 10);
        assert_eq!(engine.usage(1, end + 10).period(Period::Minute).tokens, 60);
        admitted(engine.admit(1, &limits, est(40, 0), end + 11));
        refused(engine.admit(1, &limits, est(1, 0), end + 12));
    }

    #[test]
    fn several_quotas_refuse_on_the_first_exhausted() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            quotas: vec![
                Quota {
                    period: Period::Month,
                    kind: QuotaKind::Requests,
                    limit: 100,
                },
                Quota {
                    period: Period::Minute,
                    kind: QuotaKind::Requests,
                    limit: 1,
                },
            ],
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(1, 1), T0));
        engine.settle(r, act(1, 1), T0);
        let refusal = refused(engine.admit(1, &limits, est(1, 1), T0));
        assert_eq!(
            refusal.limit,
            Limit::Quota {
                period: Period::Minute,
                kind: QuotaKind::Requests
            }
        );
    }

    // Budgets.

    #[test]
    fn money_budget_refuses_with_402_and_no_retry_after() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_nanos: Some(20 * NANOS_PER_USD),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(0, 19 * NANOS_PER_USD), T0));
        engine.settle(r, act(0, 19_500_000_000), T0);
        let refusal = refused(engine.admit(1, &limits, est(0, NANOS_PER_USD), T0));
        assert_eq!(
            refusal.limit,
            Limit::Budget {
                kind: BudgetKind::Cost
            }
        );
        assert_eq!(refusal.status, 402);
        assert_eq!(refusal.retry_after_ms, None);
        assert_eq!(refusal.retry_after_secs(), None);
        // Not spent, but too little left for this request's estimate.
        assert!(
            refusal
                .message
                .contains("$0.50 left of $20.00 ($19.50 spent"),
            "{}",
            refusal.message
        );
        admitted(engine.admit(1, &limits, est(0, NANOS_PER_USD / 2), T0));
    }

    #[test]
    fn token_budget_refuses_with_402() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_tokens: Some(1000),
            ..Limits::default()
        };
        let _held = admitted(engine.admit(1, &limits, est(600, 0), T0));
        let refusal = refused(engine.admit(1, &limits, est(401, 0), T0));
        assert_eq!(
            refusal.limit,
            Limit::Budget {
                kind: BudgetKind::Tokens
            }
        );
        assert_eq!(refusal.status, 402);
        assert!(
            refusal.message.contains("600 tokens reserved"),
            "{}",
            refusal.message
        );
        admitted(engine.admit(1, &limits, est(400, 0), T0));
    }

    #[test]
    fn exhausted_limit_refuses_a_zero_estimate_and_zero_limit_refuses_all() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_nanos: Some(100),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(0, 100), T0));
        engine.settle(r, act(0, 100), T0);
        refused(engine.admit(1, &limits, est(0, 0), T0));
        let zero = Limits {
            budget_tokens: Some(0),
            ..Limits::default()
        };
        refused(engine.admit(2, &zero, est(0, 0), T0));
    }

    #[test]
    fn a_budget_smaller_than_the_estimate_is_not_called_exhausted() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_tokens: Some(100),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(40, 0), T0));
        engine.settle(r, act(40, 0), T0);
        // 60 left, 80 asked: too small, not exhausted.
        let message = refused(engine.admit(1, &limits, est(80, 0), T0)).message;
        assert!(
            message.contains("too small for this request")
                && message.contains("60 tokens left of 100 tokens")
                && message.contains("up to 80 tokens")
                && !message.contains("exhausted"),
            "{message}"
        );
        // Spent to the last token: exhausted.
        let r = admitted(engine.admit(1, &limits, est(60, 0), T0));
        engine.settle(r, act(60, 0), T0);
        let message = refused(engine.admit(1, &limits, est(1, 0), T0)).message;
        assert!(message.contains("exhausted"), "{message}");
    }

    #[test]
    fn budget_is_reported_before_rate_limits() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(1),
            budget_nanos: Some(10),
            ..Limits::default()
        };
        let r = admitted(engine.admit(1, &limits, est(0, 10), T0));
        engine.settle(r, act(0, 10), T0);
        assert_eq!(refused(engine.admit(1, &limits, est(0, 1), T0)).status, 402);
    }

    #[test]
    fn tokens_are_independent() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            max_parallel: Some(1),
            ..Limits::default()
        };
        let _a = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let _b = admitted(engine.admit(2, &limits, est(1, 1), T0));
        refused(engine.admit(1, &limits, est(1, 1), T0));
    }

    // Concurrency: reservations make concurrent requests add up.

    #[test]
    fn hundred_concurrent_requests_against_a_budget_for_ten_admit_exactly_ten() {
        let mut engine = TokenLimits::new(TTL);
        let budget = 10 * NANOS_PER_USD;
        let estimate = budget / 10;
        let limits = Limits {
            budget_nanos: Some(budget),
            ..Limits::default()
        };
        // All 100 arrive before any settles.
        let mut held = Vec::new();
        let mut refusals = 0;
        for _ in 0..100 {
            match engine.admit(1, &limits, est(0, estimate), T0) {
                Ok(reservation) => held.push(reservation),
                Err(refusal) => {
                    assert_eq!(refusal.status, 402);
                    refusals += 1;
                }
            }
        }
        assert_eq!(held.len(), 10);
        assert_eq!(refusals, 90);
        // Each really costs up to 1.5 times its estimate.
        let mut bound = budget;
        for (i, reservation) in held.into_iter().enumerate() {
            let actual = estimate + estimate * (i as u64 % 6) / 10;
            bound += actual.saturating_sub(estimate);
            assert_eq!(
                engine.settle(reservation, act(0, actual), T0 + 1),
                Settled::OnTime
            );
        }
        let spent = engine.usage(1, T0 + 1).spent_nanos;
        // Documented bound: budget + Σ max(0, actual − estimate).
        assert!(spent > budget);
        assert!(spent <= bound, "spent {spent} > bound {bound}");
        assert_eq!(spent, bound);
        // Spent is past the budget: nothing more gets in.
        assert_eq!(
            refused(engine.admit(1, &limits, est(0, 1), T0 + 2)).status,
            402
        );
    }

    #[test]
    fn hundred_concurrent_requests_settling_under_estimate_never_overshoot() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_tokens: Some(10_000),
            max_parallel: Some(50),
            ..Limits::default()
        };
        let held: Vec<Reservation> = (0..100)
            .filter_map(|_| engine.admit(1, &limits, est(1000, 0), T0).ok())
            .collect();
        assert_eq!(held.len(), 10);
        for reservation in held {
            engine.settle(reservation, act(1000, 0), T0 + 1);
        }
        assert_eq!(engine.usage(1, T0 + 1).spent_tokens, 10_000);
        refused(engine.admit(1, &limits, est(0, 0), T0 + 2));
    }

    #[test]
    fn hundred_concurrent_requests_against_a_quota_for_ten() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Month, QuotaKind::Cost, 1_000);
        let admitted_count = (0..100)
            .filter(|_| engine.admit(1, &limits, est(0, 100), T0).is_ok())
            .count();
        assert_eq!(admitted_count, 10);
        assert_eq!(engine.outstanding(), 10);
    }

    #[test]
    fn parallel_limit_holds_for_a_hundred_concurrent_requests() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            max_parallel: Some(7),
            rpm: Some(60),
            ..Limits::default()
        };
        let admitted_count = (0..100)
            .filter(|_| engine.admit(1, &limits, est(1, 1), T0).is_ok())
            .count();
        assert_eq!(admitted_count, 7);
    }

    #[test]
    fn overshoot_is_bounded_by_requests_in_flight_at_the_last_admission() {
        let mut engine = TokenLimits::new(TTL);
        let budget = 1_000;
        let limits = Limits {
            budget_nanos: Some(budget),
            max_parallel: Some(3),
            ..Limits::default()
        };
        let (estimate, actual) = (100, 150);
        let mut in_flight = std::collections::VecDeque::new();
        let mut in_flight_at_last_admission = 0;
        for step in 0..100 {
            let now = T0 + step;
            match engine.admit(1, &limits, est(0, estimate), now) {
                Ok(reservation) => {
                    in_flight.push_back(reservation);
                    in_flight_at_last_admission = in_flight.len() as u64;
                }
                Err(_) => {
                    if let Some(oldest) = in_flight.pop_front() {
                        engine.settle(oldest, act(0, actual), now);
                    }
                }
            }
        }
        while let Some(reservation) = in_flight.pop_front() {
            engine.settle(reservation, act(0, actual), T0 + 100);
        }
        let spent = engine.usage(1, T0 + 100).spent_nanos;
        assert!(in_flight_at_last_admission <= 3);
        assert!(spent > budget);
        assert!(
            spent <= budget + in_flight_at_last_admission * (actual - estimate),
            "{spent}"
        );
    }

    #[test]
    fn a_late_timestamp_does_not_roll_a_period_back() {
        let mut engine = TokenLimits::new(TTL);
        let limits = quota(Period::Minute, QuotaKind::Requests, 1);
        let end = Period::Minute.end_ms(T0);
        let r = admitted(engine.admit(1, &limits, est(1, 1), end));
        engine.settle(r, act(1, 1), end);
        // A message stamped just before the boundary arrives afterwards.
        let refusal = refused(engine.admit(1, &limits, est(1, 1), end - 1));
        assert_eq!(refusal.retry_after_ms, Some(MINUTE_MS));
        assert_eq!(engine.usage(1, end - 1).period(Period::Minute).requests, 1);
    }

    // Settle, release, expiry, seeding.

    #[test]
    fn settle_moves_the_estimate_into_committed_spend() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits::default();
        let r = admitted(engine.admit(1, &limits, est(100, 500), T0));
        assert_eq!(r.token_id(), 1);
        assert_eq!(r.estimate(), est(100, 500));
        let usage = engine.usage(1, T0);
        assert_eq!(
            (usage.in_flight, usage.reserved_tokens, usage.reserved_nanos),
            (1, 100, 500)
        );
        assert_eq!(usage.spent_nanos, 0);
        engine.settle(r, act(120, 450), T0 + 1);
        let usage = engine.usage(1, T0 + 1);
        assert_eq!(
            (usage.in_flight, usage.reserved_tokens, usage.reserved_nanos),
            (0, 0, 0)
        );
        assert_eq!((usage.spent_tokens, usage.spent_nanos), (120, 450));
        for period in Period::ALL {
            assert_eq!(
                usage.period(period),
                PeriodSpend {
                    requests: 1,
                    tokens: 120,
                    cost_nanos: 450
                }
            );
        }
        assert_eq!(engine.outstanding(), 0);
    }

    #[test]
    fn release_frees_everything() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(1),
            tpm: Some(100),
            max_parallel: Some(1),
            quotas: vec![Quota {
                period: Period::Day,
                kind: QuotaKind::Requests,
                limit: 1,
            }],
            budget_nanos: Some(100),
            budget_tokens: Some(100),
        };
        let r = admitted(engine.admit(1, &limits, est(100, 100), T0));
        refused(engine.admit(1, &limits, est(100, 100), T0 + 1));
        assert!(engine.release(r, T0 + 2));
        assert_eq!(
            engine.usage(1, T0 + 2),
            TokenUsage {
                periods: engine.usage(1, T0 + 2).periods,
                ..TokenUsage::default()
            }
        );
        assert_eq!(
            engine.usage(1, T0 + 2).period(Period::Day),
            PeriodSpend::default()
        );
        // Every limit has room again at once.
        admitted(engine.admit(1, &limits, est(100, 100), T0 + 3));
    }

    #[test]
    fn reservations_expire_after_the_ttl() {
        let mut engine = TokenLimits::new(30_000);
        let limits = Limits {
            max_parallel: Some(1),
            budget_nanos: Some(100),
            ..Limits::default()
        };
        let lost = admitted(engine.admit(1, &limits, est(0, 100), T0));
        assert_eq!(engine.expire(T0 + 29_999), 0);
        refused(engine.admit(1, &limits, est(0, 1), T0 + 29_999));
        assert_eq!(engine.expire(T0 + 30_000), 1);
        assert_eq!(engine.outstanding(), 0);
        let usage = engine.usage(1, T0 + 30_000);
        assert_eq!((usage.in_flight, usage.reserved_nanos), (0, 0));
        let again = admitted(engine.admit(1, &limits, est(0, 100), T0 + 30_000));
        // The lost request turns up after all: it is charged, not dropped.
        assert_eq!(
            engine.settle(lost, act(0, 40), T0 + 31_000),
            Settled::AfterExpiry
        );
        assert_eq!(engine.usage(1, T0 + 31_000).spent_nanos, 40);
        assert_eq!(engine.usage(1, T0 + 31_000).in_flight, 1);
        assert_eq!(
            engine.settle(again, act(0, 60), T0 + 32_000),
            Settled::OnTime
        );
        assert_eq!(engine.usage(1, T0 + 32_000).spent_nanos, 100);
    }

    #[test]
    fn expired_reservation_keeps_its_rate_window_place_until_released() {
        let mut engine = TokenLimits::new(1_000);
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let lost = admitted(engine.admit(1, &limits, est(5, 0), T0));
        assert_eq!(engine.expire(T0 + 1_000), 1);
        assert_eq!(
            refused(engine.admit(1, &limits, est(1, 0), T0 + 1_000)).limit,
            Limit::Rpm
        );
        assert!(!engine.release(lost, T0 + 2_000));
        admitted(engine.admit(1, &limits, est(1, 0), T0 + 2_000));
    }

    #[test]
    fn expire_only_touches_old_reservations() {
        let mut engine = TokenLimits::new(10_000);
        let limits = Limits::default();
        let _old = admitted(engine.admit(1, &limits, est(1, 1), T0));
        let _new = admitted(engine.admit(2, &limits, est(1, 1), T0 + 5_000));
        assert_eq!(engine.expire(T0 + 10_000), 1);
        assert_eq!(engine.usage(1, T0 + 10_000).in_flight, 0);
        assert_eq!(engine.usage(2, T0 + 10_000).in_flight, 1);
        assert_eq!(engine.expire(T0 + 15_000), 1);
        assert_eq!(engine.outstanding(), 0);
    }

    #[test]
    fn load_committed_seeds_budgets_and_current_periods() {
        let mut engine = TokenLimits::new(TTL);
        engine.load_committed(
            1,
            &Committed {
                spent_nanos: 19 * NANOS_PER_USD,
                spent_tokens: 5_000,
                periods: vec![(
                    Period::Day,
                    PeriodSpend {
                        requests: 9,
                        tokens: 300,
                        cost_nanos: 0,
                    },
                )],
            },
            T0,
        );
        let budget = Limits {
            budget_nanos: Some(20 * NANOS_PER_USD),
            ..Limits::default()
        };
        refused(engine.admit(1, &budget, est(0, NANOS_PER_USD + 1), T0));
        admitted(engine.admit(1, &budget, est(0, NANOS_PER_USD), T0));
        let daily = quota(Period::Day, QuotaKind::Requests, 10);
        // 9 seeded + 1 in flight from above.
        refused(engine.admit(1, &daily, est(0, 0), T0));
        let usage = engine.usage(1, T0);
        assert_eq!(usage.spent_tokens, 5_000);
        assert_eq!(usage.period(Period::Day).requests, 9);
        assert_eq!(usage.period(Period::Hour).requests, 0);
        // Seeded period figures belong to the seeding day only.
        assert_eq!(
            engine
                .usage(1, JAN_1_2024 + DAY_MS)
                .period(Period::Day)
                .requests,
            0
        );
    }

    #[test]
    fn load_committed_keeps_outstanding_reservations() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            budget_nanos: Some(100),
            ..Limits::default()
        };
        let _held = admitted(engine.admit(1, &limits, est(0, 50), T0));
        engine.load_committed(
            1,
            &Committed {
                spent_nanos: 50,
                ..Committed::default()
            },
            T0,
        );
        refused(engine.admit(1, &limits, est(0, 1), T0));
        assert_eq!(engine.usage(1, T0).reserved_nanos, 50);
    }

    #[test]
    fn forget_drops_a_token_and_late_settlements_still_land() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits::default();
        let r = admitted(engine.admit(1, &limits, est(1, 1), T0));
        engine.forget(1);
        assert_eq!(engine.usage(1, T0), TokenUsage::default());
        assert_eq!(engine.settle(r, act(3, 4), T0 + 1), Settled::OnTime);
        let usage = engine.usage(1, T0 + 1);
        assert_eq!(
            (usage.spent_tokens, usage.spent_nanos, usage.in_flight),
            (3, 4, 0)
        );
    }

    // Shares of limits several instances enforce together.

    #[test]
    fn a_share_smaller_than_the_limit_asks_for_more_before_refusing() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            rpm: Some(10),
            max_parallel: Some(5),
            ..Limits::default()
        };
        let mut shares = Shares {
            rpm: Some(2),
            parallel: Some(5),
            ..Shares::default()
        };
        for _ in 0..2 {
            assert!(
                engine
                    .admit_shared(1, &limits, &shares, est(1, 0), T0)
                    .is_ok()
            );
        }
        assert_eq!(
            engine.admit_shared(1, &limits, &shares, est(1, 0), T0),
            Err(Shortfall::Share {
                limit: SharedLimit::Rpm,
                need: 1
            })
        );
        // Nothing more to lease: the limit's own refusal, naming the limit.
        shares.last_word = true;
        match engine.admit_shared(1, &limits, &shares, est(1, 0), T0) {
            Err(Shortfall::Refused(refusal)) => {
                assert_eq!(refusal.limit, Limit::Rpm);
                assert!(
                    refusal.message.contains("10 requests"),
                    "{}",
                    refusal.message
                );
                assert_eq!(refusal.retry_after_ms, Some(WINDOW_MS));
            }
            other => panic!("expected a refusal: {other:?}"),
        }
        shares.last_word = false;
        shares.rpm = Some(3);
        assert!(
            engine
                .admit_shared(1, &limits, &shares, est(1, 0), T0)
                .is_ok()
        );
        // The third is in flight with the others: the parallel share binds.
        shares.rpm = Some(10);
        shares.parallel = Some(3);
        assert_eq!(
            engine.admit_shared(1, &limits, &shares, est(1, 0), T0),
            Err(Shortfall::Share {
                limit: SharedLimit::Parallel,
                need: 1
            })
        );
    }

    #[test]
    fn a_share_larger_than_the_limit_admits_only_up_to_the_limit() {
        let mut engine = TokenLimits::new(TTL);
        let limits = Limits {
            tpm: Some(100),
            quotas: vec![Quota {
                period: Period::Day,
                kind: QuotaKind::Requests,
                limit: 50,
            }],
            ..Limits::default()
        };
        let shares = Shares {
            tpm: Some(1_000),
            quotas: vec![Some(1)],
            ..Shares::default()
        };
        assert!(
            engine
                .admit_shared(1, &limits, &shares, est(60, 0), T0)
                .is_ok()
        );
        // The quota's share of 1 is spent: more of it is needed.
        assert_eq!(
            engine.admit_shared(1, &limits, &shares, est(60, 0), T0),
            Err(Shortfall::Share {
                limit: SharedLimit::Quota(0),
                need: 1
            })
        );
        let shares = Shares {
            tpm: Some(1_000),
            quotas: vec![Some(10)],
            ..Shares::default()
        };
        // 60 + 60 tokens pass the TPM limit of 100 itself: refused, however
        // large the share.
        match engine.admit_shared(1, &limits, &shares, est(60, 0), T0) {
            Err(Shortfall::Refused(refusal)) => assert_eq!(refusal.limit, Limit::Tpm),
            other => panic!("expected a refusal: {other:?}"),
        }
    }

    // Formatting.

    #[test]
    fn dollars_and_times_format_readably() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(20 * NANOS_PER_USD), "$20.00");
        assert_eq!(usd(1_500_000_000), "$1.50");
        assert_eq!(usd(1_234_567), "$0.001234567");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            utc(FEB_29_2024 + 23 * HOUR_MS + 59 * MINUTE_MS + 59_999),
            "2024-02-29 23:59:59 UTC"
        );
    }

    #[test]
    fn retry_after_secs_rounds_up_to_at_least_one() {
        let refusal = |ms| Refusal {
            limit: Limit::Rpm,
            status: 429,
            retry_after_ms: Some(ms),
            message: String::new(),
        };
        assert_eq!(refusal(0).retry_after_secs(), Some(1));
        assert_eq!(refusal(1).retry_after_secs(), Some(1));
        assert_eq!(refusal(1000).retry_after_secs(), Some(1));
        assert_eq!(refusal(1001).retry_after_secs(), Some(2));
    }
}
