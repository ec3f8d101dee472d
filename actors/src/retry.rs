//! How a provider retries and how long a misbehaving key rests.

use serde::Deserialize;
use std::time::Duration;

/// Per-provider retry policy, handed to the request handler inside a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upstream attempts per client request, the first included. 0 (the
    /// default): each usable key of every candidate provider once, so a
    /// request fails only when all of them failed (or its deadline passed).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Cooldown for a 429 that carries no `Retry-After`.
    pub rate_limit_cooldown: Duration,
    /// Base cooldown after a 5xx, timeout or reset; doubles with the key's
    /// error streak (capped at 64x) so a dead key is tried ever more rarely.
    pub error_cooldown: Duration,
    /// Limit for one attempt up to the response head (and, for streams, the
    /// first content); `None` uses the gateway-wide `upstream.first_byte_timeout`.
    pub attempt_timeout: Option<Duration>,
    /// Consecutive 5xx/timeout/reset failures that open a key's circuit.
    /// Below it a failing request just moves on to another key.
    pub failure_threshold: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 0,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            rate_limit_cooldown: Duration::from_secs(30),
            error_cooldown: Duration::from_secs(5),
            attempt_timeout: None,
            failure_threshold: 3,
        }
    }
}

impl RetryPolicy {
    /// Whether a request that made `made` attempts may make another.
    pub fn attempts_left(&self, made: u32) -> bool {
        self.max_attempts == 0 || made < self.max_attempts
    }

    /// Whether, once every candidate key was tried, the request starts over
    /// with the keys still healthy: only when an explicit `max_attempts`
    /// asks for more attempts than there were keys.
    pub fn retries_tried_keys(&self, made: u32) -> bool {
        self.max_attempts > 0 && made < self.max_attempts
    }

    /// The pause before attempt number `attempt` (1-based; the first attempt
    /// has none). Attempts on a *different* key need no pause at all, so the
    /// handler only applies this when it must reuse a key or provider.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(16);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    /// How long a key's circuit stays open after its `streak`-th consecutive
    /// failure; zero while the streak is below the threshold.
    pub fn error_cooldown_for(&self, streak: u32) -> Duration {
        if streak < self.failure_threshold.max(1) {
            return Duration::ZERO;
        }
        let factor = 1u32 << (streak - self.failure_threshold.max(1)).min(6);
        self.error_cooldown.saturating_mul(factor)
    }
}

/// How a provider picks a key from its pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStrategy {
    /// The usable key with the lowest `priority` (then declaration order).
    FirstAvailable,
    /// Each usable key in turn.
    #[default]
    RoundRobin,
    /// A uniformly random usable key.
    Random,
    /// Random, proportional to each key's `weight`.
    Weighted,
    /// The usable key with the fewest requests in flight.
    LeastInFlight,
    /// Power of two choices over latency EWMA x (in-flight + 1).
    Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_attempts_means_every_key_once() {
        let every_key = RetryPolicy::default();
        assert_eq!(every_key.max_attempts, 0);
        assert!(every_key.attempts_left(1_000));
        assert!(!every_key.retries_tried_keys(1));
        let three = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(three.attempts_left(2) && !three.attempts_left(3));
        assert!(three.retries_tried_keys(2) && !three.retries_tried_keys(3));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), Duration::ZERO);
        assert_eq!(policy.backoff(2), Duration::from_millis(100));
        assert_eq!(policy.backoff(3), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(400));
        assert_eq!(policy.backoff(5), Duration::from_millis(500));
        assert_eq!(policy.backoff(60), Duration::from_millis(500));
    }

    #[test]
    fn error_cooldown_grows_with_streak() {
        let policy = RetryPolicy {
            error_cooldown: Duration::from_secs(1),
            failure_threshold: 2,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.error_cooldown_for(1), Duration::ZERO);
        assert_eq!(policy.error_cooldown_for(2), Duration::from_secs(1));
        assert_eq!(policy.error_cooldown_for(3), Duration::from_secs(2));
        assert_eq!(policy.error_cooldown_for(4), Duration::from_secs(4));
        assert_eq!(policy.error_cooldown_for(100), Duration::from_secs(64));
    }
}
