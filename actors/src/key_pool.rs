//! A provider's keys, their health, and the choice of the next key.
//!
//! Plain data and logic, no actor and no clock of its own: every method takes
//! `now`, so tests drive time by hand. The [`crate::ProviderActor`] is a thin
//! shell around one `KeyPool`.
//!
//! Health model per key:
//! - **disabled**: by an admin or after a 401/403 (the key is revoked or
//!   wrong); only an admin re-enables it;
//! - **cooling down**: after a 429, for the upstream's `Retry-After` (else the
//!   policy's `rate_limit_cooldown`);
//! - **circuit open**: after `failure_threshold` consecutive 5xx, timeouts or
//!   resets, for `error_cooldown` doubling with each further failure;
//! - **half-open**: once an open circuit's cooldown has passed, a single
//!   request at a time probes the key; success closes the circuit;
//! - otherwise **healthy**.

use crate::retry::{KeyStrategy, RetryPolicy};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A key as configured or stored. `Debug` masks the secret
/// ([`crate::redacted`]).
#[derive(Clone)]
pub struct KeySpec {
    /// Stable label (never the secret).
    pub id: String,
    pub secret: Arc<str>,
    pub weight: u32,
    /// Lower is preferred by `first-available`.
    pub priority: i32,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Requests this key may have in flight at once; 0 means no limit.
    pub max_in_flight: u32,
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("id", &self.id)
            .field("secret", &crate::redacted(&self.secret))
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// Why an upstream attempt failed, as far as key health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429: the key is rate limited.
    RateLimited { retry_after: Option<Duration> },
    /// 401/403: the key is wrong or revoked.
    Unauthorized,
    /// 5xx or a malformed answer.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Connect failure or a reset connection.
    Connection,
    /// The client's own fault (400, 404, 422): says nothing about the key.
    ClientError,
}

impl Failure {
    /// Whether another attempt (on another key or provider) may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Failure::ClientError)
    }
}

/// What became of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success {
        latency: Duration,
    },
    Failure(Failure),
    /// The request ended without a verdict on the key (the client went away).
    Abandoned,
}

/// The pool could lend no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoUsableKey {
    /// When the earliest cooling key becomes usable again, if any will.
    pub retry_after: Option<Duration>,
    /// Every key that will recover is resting after a 429 (the upstream's
    /// rate limit), none after errors (an open circuit).
    pub rate_limited: bool,
    /// Some key would be usable but for its `max_in_flight` cap: it frees
    /// as soon as one of its requests ends.
    pub busy: bool,
}

/// A key's health as shown to admins.
#[derive(Debug, Clone, Serialize)]
pub struct KeyHealthView {
    pub id: String,
    pub state: &'static str,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub cooldown_remaining_ms: u64,
    pub in_flight: u32,
    pub latency_ewma_ms: f64,
    pub error_streak: u32,
    pub successes: u64,
    pub failures: u64,
}

#[derive(Debug)]
struct KeyState {
    spec: KeySpec,
    in_flight: u32,
    /// Zero until the first success.
    latency_ewma_ms: f64,
    error_streak: u32,
    cooldown_until: Option<Instant>,
    successes: u64,
    failures: u64,
}

/// Weight of the newest latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.2;
/// Fixed-point unit of the alias table's probabilities.
const ALIAS_SCALE: u64 = 1 << 32;
/// Above this pool size, scanning strategies sample instead of scanning all
/// keys, so a lease costs the same with 10 keys or 10,000.
const SCAN_LIMIT: usize = 64;

impl KeyState {
    fn new(spec: KeySpec) -> Self {
        Self {
            spec,
            in_flight: 0,
            latency_ewma_ms: 0.0,
            error_streak: 0,
            cooldown_until: None,
            successes: 0,
            failures: 0,
        }
    }

    fn cooling(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|until| until > now)
    }

    fn circuit_open(&self, policy: &RetryPolicy) -> bool {
        self.error_streak >= policy.failure_threshold.max(1)
    }

    fn at_cap(&self) -> bool {
        self.spec.max_in_flight > 0 && self.in_flight >= self.spec.max_in_flight
    }

    fn usable(&self, now: Instant, policy: &RetryPolicy) -> bool {
        if !self.spec.enabled || self.cooling(now) {
            return false;
        }
        if self.at_cap() {
            return false;
        }
        // Half-open: one probe at a time.
        !(self.circuit_open(policy) && self.in_flight > 0)
    }

    fn state(&self, now: Instant, policy: &RetryPolicy) -> &'static str {
        if !self.spec.enabled {
            "disabled"
        } else if self.cooling(now) {
            if self.circuit_open(policy) {
                "open"
            } else {
                "cooling_down"
            }
        } else if self.circuit_open(policy) {
            "half_open"
        } else {
            "healthy"
        }
    }

    /// Lower is better: expected wait on this key.
    fn load_score(&self) -> f64 {
        let latency = if self.latency_ewma_ms > 0.0 {
            self.latency_ewma_ms
        } else {
            1.0
        };
        latency * f64::from(self.in_flight + 1)
    }
}

pub struct KeyPool {
    keys: Vec<KeyState>,
    strategy: KeyStrategy,
    policy: RetryPolicy,
    cursor: usize,
    rng: SmallRng,
    /// Vose alias table for O(1) weighted choice: slot `i` keeps key `i`
    /// with probability `alias_keep[i] / ALIAS_SCALE`, else `alias_other[i]`.
    alias_keep: Vec<u64>,
    alias_other: Vec<usize>,
    /// Keys sorted by (priority, index), for `first-available`.
    priority_order: Vec<usize>,
}

impl KeyPool {
    pub fn new(keys: Vec<KeySpec>, strategy: KeyStrategy, policy: RetryPolicy) -> Self {
        let mut pool = Self {
            keys: Vec::new(),
            strategy,
            policy,
            cursor: 0,
            rng: SmallRng::from_rng(&mut rand::rng()),
            alias_keep: Vec::new(),
            alias_other: Vec::new(),
            priority_order: Vec::new(),
        };
        pool.set_keys(keys);
        pool
    }

    /// A pool whose random choices repeat, for tests.
    pub fn with_seed(
        keys: Vec<KeySpec>,
        strategy: KeyStrategy,
        policy: RetryPolicy,
        seed: u64,
    ) -> Self {
        let mut pool = Self::new(keys, strategy, policy);
        pool.rng = SmallRng::seed_from_u64(seed);
        pool
    }

    /// Replaces the key set, keeping the health of keys whose id survives.
    pub fn set_keys(&mut self, specs: Vec<KeySpec>) {
        let mut old: std::collections::HashMap<String, KeyState> = self
            .keys
            .drain(..)
            .map(|state| (state.spec.id.clone(), state))
            .collect();
        self.keys = specs
            .into_iter()
            .map(|spec| match old.remove(&spec.id) {
                Some(mut state) => {
                    state.spec = spec;
                    state
                }
                None => KeyState::new(spec),
            })
            .collect();
        self.build_alias_table();
        self.priority_order = (0..self.keys.len()).collect();
        self.priority_order.sort_by_key(|&index| {
            (
                self.keys.get(index).map_or(0, |key| key.spec.priority),
                index,
            )
        });
        self.cursor = 0;
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The secret and id of key `index`, if it exists.
    pub fn key(&self, index: usize) -> Option<&KeySpec> {
        self.keys.get(index).map(|state| &state.spec)
    }

    /// Lends a usable key not in `exclude` (ids already tried by this
    /// request) and counts it in flight. Returns its index.
    pub fn acquire(&mut self, now: Instant, exclude: &[String]) -> Result<usize, NoUsableKey> {
        let picked = match self.strategy {
            KeyStrategy::FirstAvailable => self.pick_first_available(now, exclude),
            KeyStrategy::RoundRobin => self.pick_round_robin(now, exclude),
            KeyStrategy::Random => {
                let start = self.random_index();
                self.scan_from(start, now, exclude)
            }
            KeyStrategy::Weighted => {
                let start = self.weighted_index();
                self.scan_from(start, now, exclude)
            }
            KeyStrategy::LeastInFlight => {
                self.pick_min(now, exclude, |key| f64::from(key.in_flight))
            }
            KeyStrategy::Latency => self.pick_min(now, exclude, KeyState::load_score),
        };
        match picked {
            Some(index) => {
                if let Some(key) = self.keys.get_mut(index) {
                    key.in_flight += 1;
                }
                Ok(index)
            }
            None => Err(self.no_usable_key(now, exclude)),
        }
    }

    /// Learns from a finished attempt on key `index` and releases it.
    pub fn report(&mut self, index: usize, outcome: Outcome, now: Instant) {
        let policy = self.policy.clone();
        let Some(key) = self.keys.get_mut(index) else {
            return;
        };
        key.in_flight = key.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success { latency } => {
                let sample = latency.as_secs_f64() * 1000.0;
                key.latency_ewma_ms = if key.latency_ewma_ms == 0.0 {
                    sample
                } else {
                    EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * key.latency_ewma_ms
                };
                key.error_streak = 0;
                key.cooldown_until = None;
                key.successes += 1;
            }
            Outcome::Failure(Failure::ClientError) | Outcome::Abandoned => {}
            Outcome::Failure(Failure::RateLimited { retry_after }) => {
                key.failures += 1;
                let rest = retry_after.unwrap_or(policy.rate_limit_cooldown);
                key.cooldown_until = Some(now + rest);
            }
            Outcome::Failure(Failure::Unauthorized) => {
                key.failures += 1;
                key.spec.enabled = false;
                key.spec.disabled_reason = Some("upstream rejected the key (401/403)".to_owned());
            }
            Outcome::Failure(Failure::ServerError | Failure::Timeout | Failure::Connection) => {
                key.failures += 1;
                key.error_streak += 1;
                let rest = policy.error_cooldown_for(key.error_streak);
                if !rest.is_zero() {
                    key.cooldown_until = Some(now + rest);
                }
            }
        }
    }

    /// Enables or disables key `id` by hand; enabling also clears its
    /// cooldown and error streak. Returns false for an unknown id.
    pub fn set_enabled(&mut self, id: &str, enabled: bool, reason: Option<String>) -> bool {
        let Some(key) = self.keys.iter_mut().find(|key| key.spec.id == id) else {
            return false;
        };
        key.spec.enabled = enabled;
        key.spec.disabled_reason = if enabled { None } else { reason };
        if enabled {
            key.error_streak = 0;
            key.cooldown_until = None;
        }
        true
    }

    /// Rests key `id` until `until` at least, as a 429 with `Retry-After`
    /// would: what another instance saw of a key this one shares (issue 14).
    /// Not a failure here: counts and the error streak stay. Returns false
    /// for an unknown id.
    pub fn rest_until(&mut self, id: &str, until: Instant) -> bool {
        let Some(key) = self.keys.iter_mut().find(|key| key.spec.id == id) else {
            return false;
        };
        key.cooldown_until = Some(key.cooldown_until.map_or(until, |known| known.max(until)));
        true
    }

    /// Lends every half-open key that is idle, for a background probe (a
    /// cheap request such as the model list). The lease counts in flight, so
    /// client traffic does not probe the same key at the same time; its
    /// outcome closes or re-opens the circuit like any other.
    pub fn take_probes(&mut self, now: Instant) -> Vec<usize> {
        let policy = self.policy.clone();
        let mut due = Vec::new();
        for (index, key) in self.keys.iter_mut().enumerate() {
            if key.spec.enabled
                && !key.cooling(now)
                && key.circuit_open(&policy)
                && key.in_flight == 0
            {
                key.in_flight += 1;
                due.push(index);
            }
        }
        due
    }

    /// How many keys could be lent now.
    pub fn usable_keys(&self, now: Instant) -> usize {
        self.keys
            .iter()
            .filter(|key| key.usable(now, &self.policy))
            .count()
    }

    pub fn health(&self, now: Instant) -> Vec<KeyHealthView> {
        self.keys
            .iter()
            .map(|key| KeyHealthView {
                id: key.spec.id.clone(),
                state: key.state(now, &self.policy),
                enabled: key.spec.enabled,
                disabled_reason: key.spec.disabled_reason.clone(),
                cooldown_remaining_ms: key.cooldown_until.map_or(0, |until| {
                    until.saturating_duration_since(now).as_millis() as u64
                }),
                in_flight: key.in_flight,
                latency_ewma_ms: key.latency_ewma_ms,
                error_streak: key.error_streak,
                successes: key.successes,
                failures: key.failures,
            })
            .collect()
    }

    fn available(&self, index: usize, now: Instant, exclude: &[String]) -> bool {
        self.keys
            .get(index)
            .is_some_and(|key| key.usable(now, &self.policy) && !exclude.contains(&key.spec.id))
    }

    fn random_index(&mut self) -> usize {
        if self.keys.is_empty() {
            0
        } else {
            self.rng.random_range(0..self.keys.len())
        }
    }

    /// Builds the alias table (Vose, 1991) from the key weights: O(n) once
    /// per key-set change, so each weighted draw is O(1) at any pool size.
    fn build_alias_table(&mut self) {
        let count = self.keys.len();
        let weights: Vec<u64> = self
            .keys
            .iter()
            .map(|key| u64::from(key.spec.weight.max(1)))
            .collect();
        let total: u64 = weights.iter().sum();
        // Scaled so that the average slot is exactly ALIAS_SCALE.
        let mut scaled: Vec<u64> = weights
            .iter()
            .map(|&weight| {
                weight
                    .saturating_mul(ALIAS_SCALE)
                    .saturating_mul(count as u64)
                    / total.max(1)
            })
            .collect();
        self.alias_keep = vec![ALIAS_SCALE; count];
        self.alias_other = (0..count).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..count).partition(|&index| scaled.get(index).is_some_and(|&w| w < ALIAS_SCALE));
        while let (Some(less), Some(&more)) = (small.pop(), large.last()) {
            let less_weight = scaled.get(less).copied().unwrap_or(ALIAS_SCALE);
            if let Some(keep) = self.alias_keep.get_mut(less) {
                *keep = less_weight;
            }
            if let Some(other) = self.alias_other.get_mut(less) {
                *other = more;
            }
            if let Some(more_weight) = scaled.get_mut(more) {
                *more_weight = (*more_weight + less_weight).saturating_sub(ALIAS_SCALE);
                if *more_weight < ALIAS_SCALE {
                    large.pop();
                    small.push(more);
                }
            }
        }
    }

    fn weighted_index(&mut self) -> usize {
        if self.keys.is_empty() {
            return 0;
        }
        let slot = self.rng.random_range(0..self.keys.len());
        let keep = self.alias_keep.get(slot).copied().unwrap_or(ALIAS_SCALE);
        if self.rng.random_range(0..ALIAS_SCALE) < keep {
            slot
        } else {
            self.alias_other.get(slot).copied().unwrap_or(slot)
        }
    }

    /// First available key at or after `start`, wrapping around.
    fn scan_from(&self, start: usize, now: Instant, exclude: &[String]) -> Option<usize> {
        let len = self.keys.len();
        (0..len)
            .map(|offset| (start + offset) % len)
            .find(|&index| self.available(index, now, exclude))
    }

    fn pick_round_robin(&mut self, now: Instant, exclude: &[String]) -> Option<usize> {
        let picked = self.scan_from(self.cursor, now, exclude)?;
        self.cursor = (picked + 1) % self.keys.len().max(1);
        Some(picked)
    }

    fn pick_first_available(&self, now: Instant, exclude: &[String]) -> Option<usize> {
        self.priority_order
            .iter()
            .copied()
            .find(|&index| self.available(index, now, exclude))
    }

    /// The available key with the lowest `score`: an exact scan for small
    /// pools, power-of-two-choices sampling for large ones.
    fn pick_min(
        &mut self,
        now: Instant,
        exclude: &[String],
        score: impl Fn(&KeyState) -> f64,
    ) -> Option<usize> {
        let better = |this: &Self, a: Option<usize>, b: usize| -> Option<usize> {
            match a {
                None => Some(b),
                Some(a) => {
                    let (Some(ka), Some(kb)) = (this.keys.get(a), this.keys.get(b)) else {
                        return Some(a);
                    };
                    if score(kb) < score(ka) {
                        Some(b)
                    } else {
                        Some(a)
                    }
                }
            }
        };
        if self.keys.len() <= SCAN_LIMIT {
            let mut best = None;
            for index in 0..self.keys.len() {
                if self.available(index, now, exclude) {
                    best = better(self, best, index);
                }
            }
            return best;
        }
        let first = self.random_index();
        let second = self.random_index();
        let first = self.scan_from(first, now, exclude)?;
        let second = self.scan_from(second, now, exclude).unwrap_or(first);
        better(self, Some(first), second)
    }

    /// Why nothing could be lent: the time until the earliest cooling (not
    /// disabled, not excluded) key recovers, and whether the cooling keys
    /// are only rate limited.
    fn no_usable_key(&self, now: Instant, exclude: &[String]) -> NoUsableKey {
        let mut retry_after: Option<Duration> = None;
        let mut circuit_open = false;
        let mut busy = false;
        for key in self
            .keys
            .iter()
            .filter(|key| key.spec.enabled && !exclude.contains(&key.spec.id))
        {
            if let Some(until) = key.cooldown_until {
                let wait = until.saturating_duration_since(now);
                retry_after = Some(retry_after.map_or(wait, |earliest| earliest.min(wait)));
                circuit_open |= key.circuit_open(&self.policy);
            }
            busy |= !key.cooling(now) && key.at_cap();
        }
        NoUsableKey {
            retry_after,
            rate_limited: retry_after.is_some() && !circuit_open,
            busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<KeySpec> {
        (0..n)
            .map(|i| KeySpec {
                id: format!("k{i}"),
                secret: Arc::from(format!("secret-{i}")),
                weight: 1,
                priority: 0,
                enabled: true,
                disabled_reason: None,
                max_in_flight: 0,
            })
            .collect()
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            failure_threshold: 2,
            error_cooldown: Duration::from_secs(10),
            rate_limit_cooldown: Duration::from_secs(30),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn debug_output_never_shows_a_key_secret() {
        let key = KeySpec {
            id: "key-1".to_owned(),
            secret: Arc::from("sk-live-0123456789abcdefXYZW"),
            weight: 1,
            priority: 0,
            enabled: true,
            disabled_reason: None,
            max_in_flight: 0,
        };
        let printed = format!("{key:?} {key:#?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains("sk-l…XYZW"), "{printed}");
        assert!(printed.contains("key-1"), "{printed}");
        let short = KeySpec {
            secret: Arc::from("tiny-secret"),
            ..key
        };
        assert!(!format!("{short:?}").contains("tiny-secret"));
    }

    #[test]
    fn round_robin_visits_every_key_in_turn() {
        let mut pool = KeyPool::new(keys(3), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let order: Vec<usize> = (0..6).filter_map(|_| pool.acquire(now, &[]).ok()).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn excluded_keys_are_skipped() {
        let mut pool = KeyPool::new(keys(2), KeyStrategy::FirstAvailable, policy());
        let now = Instant::now();
        assert_eq!(pool.acquire(now, &["k0".to_owned()]), Ok(1));
        assert!(
            pool.acquire(now, &["k0".to_owned(), "k1".to_owned()])
                .is_err()
        );
    }

    #[test]
    fn rate_limit_cools_down_for_retry_after_then_recovers() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let index = pool.acquire(now, &[]).unwrap_or(usize::MAX);
        pool.report(
            index,
            Outcome::Failure(Failure::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            }),
            now,
        );
        let refused = pool.acquire(now, &[]);
        assert_eq!(
            refused,
            Err(NoUsableKey {
                retry_after: Some(Duration::from_secs(2)),
                rate_limited: true,
                busy: false,
            })
        );
        assert_eq!(pool.acquire(now + Duration::from_secs(2), &[]), Ok(0));
    }

    #[test]
    fn rate_limit_without_header_uses_policy_cooldown() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let _ = pool.acquire(now, &[]);
        pool.report(
            0,
            Outcome::Failure(Failure::RateLimited { retry_after: None }),
            now,
        );
        assert!(pool.acquire(now + Duration::from_secs(29), &[]).is_err());
        assert!(pool.acquire(now + Duration::from_secs(30), &[]).is_ok());
    }

    #[test]
    fn circuit_opens_at_threshold_then_half_opens_with_one_probe() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let _ = pool.acquire(now, &[]);
        pool.report(0, Outcome::Failure(Failure::ServerError), now);
        // Below the threshold: still usable.
        assert_eq!(pool.acquire(now, &[]), Ok(0));
        pool.report(0, Outcome::Failure(Failure::Timeout), now);
        // Threshold reached: open for error_cooldown, and said to be
        // failing rather than rate limited.
        assert_eq!(
            pool.acquire(now + Duration::from_secs(9), &[]),
            Err(NoUsableKey {
                retry_after: Some(Duration::from_secs(1)),
                rate_limited: false,
                busy: false,
            })
        );
        assert_eq!(pool.health(now).first().map(|h| h.state), Some("open"));
        let later = now + Duration::from_secs(10);
        assert_eq!(
            pool.health(later).first().map(|h| h.state),
            Some("half_open")
        );
        assert_eq!(pool.acquire(later, &[]), Ok(0));
        // Only one probe at a time.
        assert!(pool.acquire(later, &[]).is_err());
        pool.report(
            0,
            Outcome::Success {
                latency: Duration::from_millis(20),
            },
            later,
        );
        assert_eq!(pool.health(later).first().map(|h| h.state), Some("healthy"));
        assert_eq!(pool.acquire(later, &[]), Ok(0));
        assert_eq!(pool.acquire(later, &[]), Ok(0));
    }

    #[test]
    fn failed_probe_reopens_for_longer() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        for _ in 0..2 {
            let _ = pool.acquire(now, &[]);
            pool.report(0, Outcome::Failure(Failure::Connection), now);
        }
        let probe_time = now + Duration::from_secs(10);
        let _ = pool.acquire(probe_time, &[]);
        pool.report(0, Outcome::Failure(Failure::Connection), probe_time);
        assert!(
            pool.acquire(probe_time + Duration::from_secs(19), &[])
                .is_err()
        );
        assert!(
            pool.acquire(probe_time + Duration::from_secs(20), &[])
                .is_ok()
        );
    }

    #[test]
    fn unauthorized_disables_until_an_admin_enables() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let _ = pool.acquire(now, &[]);
        pool.report(0, Outcome::Failure(Failure::Unauthorized), now);
        let far = now + Duration::from_secs(3600);
        assert_eq!(
            pool.acquire(far, &[]),
            Err(NoUsableKey {
                retry_after: None,
                rate_limited: false,
                busy: false,
            })
        );
        let health = pool.health(far);
        assert_eq!(health.first().map(|h| h.state), Some("disabled"));
        assert!(
            health
                .first()
                .and_then(|h| h.disabled_reason.clone())
                .is_some()
        );
        assert!(pool.set_enabled("k0", true, None));
        assert_eq!(pool.acquire(far, &[]), Ok(0));
    }

    #[test]
    fn client_errors_and_abandons_leave_health_alone() {
        let mut pool = KeyPool::new(keys(1), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        for outcome in [Outcome::Failure(Failure::ClientError), Outcome::Abandoned] {
            for _ in 0..5 {
                let _ = pool.acquire(now, &[]);
                pool.report(0, outcome, now);
            }
        }
        let health = pool.health(now);
        assert_eq!(
            health.first().map(|h| (h.state, h.in_flight, h.failures)),
            Some(("healthy", 0, 0))
        );
    }

    #[test]
    fn first_available_honours_priority() {
        let mut specs = keys(3);
        if let Some(key) = specs.get_mut(2) {
            key.priority = -1;
        }
        let mut pool = KeyPool::new(specs, KeyStrategy::FirstAvailable, policy());
        let now = Instant::now();
        assert_eq!(pool.acquire(now, &[]), Ok(2));
        assert_eq!(pool.acquire(now, &[]), Ok(2));
        pool.report(
            2,
            Outcome::Failure(Failure::RateLimited { retry_after: None }),
            now,
        );
        assert_eq!(pool.acquire(now, &[]), Ok(0));
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let mut specs = keys(2);
        if let Some(key) = specs.get_mut(1) {
            key.weight = 3;
        }
        let mut pool = KeyPool::with_seed(specs, KeyStrategy::Weighted, policy(), 7);
        let now = Instant::now();
        let mut counts = [0u32; 2];
        for _ in 0..4000 {
            if let Ok(index) = pool.acquire(now, &[]) {
                pool.report(index, Outcome::Abandoned, now);
                if let Some(count) = counts.get_mut(index) {
                    *count += 1;
                }
            }
        }
        // Expect ~1000 / ~3000.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert!((2800..3200).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn least_in_flight_spreads_concurrent_leases() {
        let mut pool = KeyPool::new(keys(3), KeyStrategy::LeastInFlight, policy());
        let now = Instant::now();
        let mut picked: Vec<usize> = (0..3).filter_map(|_| pool.acquire(now, &[]).ok()).collect();
        picked.sort_unstable();
        assert_eq!(picked, vec![0, 1, 2]);
    }

    #[test]
    fn latency_strategy_prefers_the_faster_key() {
        let mut pool = KeyPool::new(keys(2), KeyStrategy::Latency, policy());
        let now = Instant::now();
        for (index, ms) in [(0, 500), (1, 20)] {
            let _ = pool.acquire(now, &[]);
            pool.report(
                index,
                Outcome::Success {
                    latency: Duration::from_millis(ms),
                },
                now,
            );
        }
        assert_eq!(pool.acquire(now, &[]), Ok(1));
    }

    #[test]
    fn set_keys_keeps_health_of_surviving_keys() {
        let mut pool = KeyPool::new(keys(2), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        let _ = pool.acquire(now, &[]);
        pool.report(
            0,
            Outcome::Failure(Failure::RateLimited { retry_after: None }),
            now,
        );
        pool.set_keys(keys(3));
        let health = pool.health(now);
        assert_eq!(health.len(), 3);
        assert_eq!(health.first().map(|h| h.state), Some("cooling_down"));
    }

    #[test]
    fn a_rest_shared_by_another_instance_is_avoided_without_counting_a_failure() {
        let mut pool = KeyPool::new(keys(2), KeyStrategy::FirstAvailable, policy());
        let now = Instant::now();
        assert!(pool.rest_until("k0", now + Duration::from_secs(60)));
        assert!(!pool.rest_until("nope", now + Duration::from_secs(60)));
        assert_eq!(pool.acquire(now, &[]), Ok(1), "the rested key is skipped");
        // A shorter rest heard later does not cut a longer one short.
        assert!(pool.rest_until("k0", now + Duration::from_secs(1)));
        let k0 = pool.health(now).into_iter().next();
        assert_eq!(k0.as_ref().map(|h| h.state), Some("cooling_down"));
        assert_eq!(k0.as_ref().map(|h| h.failures), Some(0));
        assert!(k0.is_some_and(|h| h.cooldown_remaining_ms > 59_000));
        assert_eq!(
            pool.acquire(now, &["k1".to_owned()])
                .map_err(|e| e.rate_limited),
            Err(true),
            "a request that finds only the rested key is told it is rate limited"
        );
    }

    #[test]
    fn per_key_concurrency_limit_spreads_then_refuses() {
        let mut specs = keys(2);
        for key in &mut specs {
            key.max_in_flight = 2;
        }
        let mut pool = KeyPool::new(specs, KeyStrategy::FirstAvailable, policy());
        let now = Instant::now();
        let leased: Vec<usize> = (0..4).filter_map(|_| pool.acquire(now, &[]).ok()).collect();
        assert_eq!(leased, vec![0, 0, 1, 1]);
        assert_eq!(
            pool.acquire(now, &[]),
            Err(NoUsableKey {
                retry_after: None,
                rate_limited: false,
                busy: true,
            })
        );
        pool.report(
            0,
            Outcome::Success {
                latency: Duration::from_millis(1),
            },
            now,
        );
        assert_eq!(pool.acquire(now, &[]), Ok(0));
    }

    #[test]
    fn probes_take_idle_half_open_keys_only() {
        let mut pool = KeyPool::new(keys(3), KeyStrategy::RoundRobin, policy());
        let now = Instant::now();
        // k0 and k1 open their circuits (threshold 2); k2 stays healthy.
        for index in [0, 0, 1, 1] {
            pool.report(index, Outcome::Failure(Failure::ServerError), now);
        }
        assert!(pool.take_probes(now).is_empty(), "still cooling down");
        let later = now + Duration::from_secs(10);
        assert_eq!(pool.take_probes(later), vec![0, 1]);
        // A probe is in flight: neither probes again nor serves traffic.
        assert!(pool.take_probes(later).is_empty());
        assert_eq!(pool.acquire(later, &[]), Ok(2));
        pool.report(
            0,
            Outcome::Success {
                latency: Duration::from_millis(5),
            },
            later,
        );
        pool.report(1, Outcome::Failure(Failure::Connection), later);
        let states: Vec<&str> = pool.health(later).iter().map(|h| h.state).collect();
        assert_eq!(states, vec!["healthy", "open", "healthy"]);
    }

    #[test]
    fn large_pools_still_find_the_one_usable_key() {
        let mut specs = keys(10_000);
        for key in specs.iter_mut().take(9_999) {
            key.enabled = false;
        }
        for strategy in [
            KeyStrategy::RoundRobin,
            KeyStrategy::Random,
            KeyStrategy::Weighted,
            KeyStrategy::LeastInFlight,
            KeyStrategy::Latency,
            KeyStrategy::FirstAvailable,
        ] {
            let mut pool = KeyPool::new(specs.clone(), strategy, policy());
            assert_eq!(pool.acquire(Instant::now(), &[]), Ok(9_999), "{strategy:?}");
        }
    }
}
