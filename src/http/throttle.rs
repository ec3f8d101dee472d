//! Slowing down and then refusing clients that keep failing to
//! authenticate (guessing tokens or the admin key).
//!
//! Failures are counted per client address over `limits.auth.window`. Past
//! `slow_after`, each further failure is answered only after a delay that
//! doubles per failure (up to `max_delay`), which makes online guessing
//! slow without holding a worker (the delay is an async sleep). Past
//! `block_after`, the address is refused with 429 and `Retry-After` for
//! `block_for`, before any token lookup.
//!
//! A success erases nothing: failures only age out with the window. (When a
//! success reset the count, one valid request after every few wrong ones
//! let an address guess without end: issue 10, item 7.) Gateway tokens and
//! admin credentials are counted in two throttles, so client traffic never
//! buys admin guesses.
//!
//! The table is bounded (`MAX_TRACKED` addresses): a new address past the
//! bound evicts the address first seen longest ago, in constant time, so a
//! flood of addresses never makes a failure scan the table under the lock
//! every request takes. IPv6 addresses are counted per /64, the block one
//! host is usually given.
//!
//! The address is the TCP peer: behind a reverse proxy every client shares
//! the proxy's address, so set the limits accordingly (documented).

use crate::config::AuthThrottleSettings;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Addresses remembered at most; past it, the one first seen longest ago
/// is forgotten.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    window_start_ms: i64,
    blocked_until_ms: i64,
}

/// The failure counts and the order their addresses were first seen in
/// (every key of `counts` is in `order` exactly once).
#[derive(Debug, Default)]
struct Table {
    counts: HashMap<IpAddr, Failures>,
    order: VecDeque<IpAddr>,
}

pub struct AuthThrottle {
    settings: AuthThrottleSettings,
    capacity: usize,
    failures: Mutex<Table>,
}

/// What is counted for an address: itself, or its /64 for IPv6 (a host
/// usually holds a whole /64; IPv4-mapped addresses count as IPv4).
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl AuthThrottle {
    pub fn new(settings: AuthThrottleSettings) -> Self {
        Self::with_capacity(settings, MAX_TRACKED)
    }

    /// A throttle remembering at most `capacity` addresses (at least one).
    pub fn with_capacity(settings: AuthThrottleSettings, capacity: usize) -> Self {
        Self {
            settings,
            capacity: capacity.max(1),
            failures: Mutex::new(Table::default()),
        }
    }

    /// How many addresses are remembered.
    pub fn tracked(&self) -> usize {
        self.failures.lock().map_or(0, |table| table.counts.len())
    }

    /// `Err(wait)` while `ip` is blocked.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), Duration> {
        let Ok(table) = self.failures.lock() else {
            return Ok(());
        };
        match table.counts.get(&counted_as(ip)) {
            Some(entry) if entry.blocked_until_ms > now_ms => Err(Duration::from_millis(
                u64::try_from(entry.blocked_until_ms - now_ms).unwrap_or(0),
            )),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication; returns how long to hold the answer.
    pub fn failure(&self, ip: IpAddr, now_ms: i64) -> Duration {
        let Ok(mut guard) = self.failures.lock() else {
            return Duration::ZERO;
        };
        let table = &mut *guard;
        let ip = counted_as(ip);
        let window = ms(self.settings.window);
        if !table.counts.contains_key(&ip) {
            while table.counts.len() >= self.capacity {
                let Some(oldest) = table.order.pop_front() else {
                    break;
                };
                table.counts.remove(&oldest);
            }
            table.order.push_back(ip);
        }
        let entry = table.counts.entry(ip).or_default();
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
        assert_eq!(t.failure(ip, 300_006), Duration::ZERO);
        assert_eq!(t.failure(ip, 300_007), Duration::from_millis(100));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_address_seen_first() {
        let t = AuthThrottle::with_capacity(throttle().settings, 3);
        let ips: Vec<IpAddr> = (1..=4).map(|n| IpAddr::from([10, 0, 1, n])).collect();
        for ip in &ips {
            for at in 0..5 {
                t.failure(*ip, at);
            }
            assert!(t.check(*ip, 10).is_err(), "{ip} is blocked");
        }
        assert_eq!(t.tracked(), 3);
        assert_eq!(t.check(ips[0], 10), Ok(()), "the oldest was evicted");
        for ip in &ips[1..] {
            assert!(t.check(*ip, 10).is_err(), "{ip} is still remembered");
        }
    }

    /// Past `MAX_TRACKED` addresses each failure used to scan the whole
    /// table under the lock (p50 0.5 -> 9 ms in issue 10): a flood of
    /// addresses must cost the same per failure as a few.
    #[test]
    fn failures_from_a_flood_of_addresses_stay_cheap() {
        let t = throttle();
        let started = std::time::Instant::now();
        let flood = u32::try_from(MAX_TRACKED).unwrap_or(u32::MAX) + 50_000;
        for n in 0..flood {
            t.failure(IpAddr::from((0x0a00_0000 + n).to_be_bytes()), 1);
        }
        assert_eq!(t.tracked(), MAX_TRACKED);
        // About 0.1 s even in a debug build on a loaded machine; a scan per
        // failure takes minutes.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{flood} failures took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let t = throttle();
        for n in 0..5u16 {
            let ip: IpAddr = [0x2001, 0xdb8, 0, 1, n, n, n, n].into();
            t.failure(ip, i64::from(n));
        }
        let sibling: IpAddr = [0x2001, 0xdb8, 0, 1, 9, 9, 9, 9].into();
        let neighbour: IpAddr = [0x2001, 0xdb8, 0, 2, 0, 0, 0, 1].into();
        assert!(t.check(sibling, 10).is_err());
        assert_eq!(t.check(neighbour, 10), Ok(()));
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
