//! Slowing down and then refusing clients that keep failing to
//! authenticate (guessing tokens or the admin key).
//!
//! Failures are counted per client address over `limits.auth.window`. Past
//! `slow_after`, each further failure is answered only after a delay that
//! doubles per failure (up to `max_delay`), which makes online guessing
//! slow without holding a worker (the delay is an async sleep). Past
//! `block_after`, the address is refused with 429 and `Retry-After` for
//! `block_for`, before any token lookup. A success forgets the address.
//!
//! The address is the TCP peer: behind a reverse proxy every client shares
//! the proxy's address, so set the limits accordingly (documented).

use crate::config::AuthThrottleSettings;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Addresses remembered at most; past it, stale entries are dropped first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    window_start_ms: i64,
    blocked_until_ms: i64,
}

pub struct AuthThrottle {
    settings: AuthThrottleSettings,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl AuthThrottle {
    pub fn new(settings: AuthThrottleSettings) -> Self {
        Self {
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `ip` is blocked.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), Duration> {
        let Ok(failures) = self.failures.lock() else {
            return Ok(());
        };
        match failures.get(&ip) {
            Some(entry) if entry.blocked_until_ms > now_ms => Err(Duration::from_millis(
                u64::try_from(entry.blocked_until_ms - now_ms).unwrap_or(0),
            )),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication; returns how long to hold the answer.
    pub fn failure(&self, ip: IpAddr, now_ms: i64) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return Duration::ZERO;
        };
        let window = ms(self.settings.window);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, entry| {
                entry.blocked_until_ms > now_ms || now_ms - entry.window_start_ms < window
            });
        }
        let entry = failures.entry(ip).or_default();
        if now_ms - entry.window_start_ms >= window && entry.blocked_until_ms <= now_ms {
            *entry = Failures {
                window_start_ms: now_ms,
                ..Failures::default()
            };
        }
        entry.count += 1;
        if entry.count >= self.settings.block_after {
            entry.blocked_until_ms = now_ms + ms(self.settings.block_for);
        }
        let excess = entry.count.saturating_sub(self.settings.slow_after);
        if excess == 0 {
            return Duration::ZERO;
        }
        // 100 ms, 200 ms, 400 ms ... capped.
        let delay =
            Duration::from_millis(100u64.saturating_mul(1 << excess.min(16).saturating_sub(1)));
        delay.min(self.settings.max_delay)
    }

    /// A success: the address starts afresh.
    pub fn success(&self, ip: IpAddr) {
        if let Ok(mut failures) = self.failures.lock()
            && failures.get(&ip).is_some_and(|entry| entry.count > 0)
        {
            failures.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(AuthThrottleSettings {
            slow_after: 2,
            block_after: 5,
            window: Duration::from_secs(60),
            block_for: Duration::from_secs(300),
            max_delay: Duration::from_millis(300),
        })
    }

    #[test]
    fn slows_then_blocks_then_forgets() {
        let t = throttle();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(t.failure(ip, 0), Duration::ZERO);
        assert_eq!(t.failure(ip, 1), Duration::ZERO);
        assert_eq!(t.failure(ip, 2), Duration::from_millis(100));
        assert_eq!(t.failure(ip, 3), Duration::from_millis(200));
        assert_eq!(t.check(ip, 4), Ok(()));
        assert_eq!(t.failure(ip, 4), Duration::from_millis(300), "capped");
        assert_eq!(t.check(ip, 5), Err(Duration::from_millis(299_999)));
        assert_eq!(t.check(other, 5), Ok(()), "per address");
        assert_eq!(t.check(ip, 300_004), Ok(()), "the block ends");
        // A new window starts from zero.
        assert_eq!(t.failure(ip, 300_005), Duration::ZERO);
        t.success(ip);
        assert_eq!(t.failure(ip, 300_006), Duration::ZERO);
    }

    #[test]
    fn failures_spread_over_windows_never_block() {
        let t = throttle();
        let ip: IpAddr = [10, 0, 0, 3].into();
        for window in 0..10 {
            let start = window * 60_000;
            t.failure(ip, start);
            t.failure(ip, start + 1);
            assert_eq!(t.check(ip, start + 2), Ok(()));
        }
    }
}
