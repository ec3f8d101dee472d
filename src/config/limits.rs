//! `[limits]`: how gateway tokens' budgets, quotas and rate limits are
//! enforced, and `[limits.auth]`: how failed authentications are throttled.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Completion tokens assumed for a request that sets no `max_tokens`
    /// when reserving against budgets and quotas.
    pub default_completion_tokens: u64,
    /// A hold left by a request that never settled (a crashed instance) is
    /// given back after this long.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// Serve models without a price to tokens with a money budget (or
    /// prepaid owners), counting them at $0; off: refuse them (402).
    pub allow_unpriced: bool,
    /// Budgets and prepaid balances are reserved from the database in
    /// slices, not per request (issue 11): a slice is this fraction of what
    /// is left (at least the request's estimate). 0: exactly the estimate.
    pub budget_slice_fraction: f64,
    /// An instance gives back the unused part of a token's slice once no
    /// request of the token has run for this long.
    #[serde(with = "humantime_serde")]
    pub budget_slice_idle: Duration,
    /// On PostgreSQL, enforce RPM, TPM, parallelism and quotas across every
    /// instance sharing the database: each instance leases shares of a
    /// limit and admits within them (docs/limits.md). Off, or on SQLite:
    /// each instance counts its own traffic. Read at start.
    pub shared: bool,
    /// A share lease takes this fraction of what no instance holds (at
    /// least what the request needs).
    pub shared_slice_fraction: f64,
    pub auth: AuthThrottleSettings,
}

/// Failed authentications from one client address within `window`: past
/// `slow_after` each further failure is answered after a growing delay,
/// past `block_after` the address is refused (429) for `block_for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthThrottleSettings {
    pub slow_after: u32,
    pub block_after: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(with = "humantime_serde")]
    pub block_for: Duration,
    /// Longest delay added to a failed attempt.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}
