//! The gateway's one wall clock, behind a trait so that time can be moved by
//! hand in tests instead of slept through.
//!
//! Every date the gateway reads or writes comes from the [`Clock`] `run`
//! builds (`StartOptions::clock`, else [`SystemClock`]): limits and quotas
//! that reset on calendar boundaries, reservation and session expiries, the
//! admin throttle, usage records' times, and every time column the database
//! writes (`Db::now_ms`, the same clock held by the `Db` handle). Before
//! issue 11 there were five notions of "now"; a test that moved the manual
//! clock moved some of them and not the others.
//!
//! Spans are a different thing: latency, timeouts, cooldowns and cache TTLs
//! are measured with `std::time::Instant`, a monotonic clock that a wall
//! clock step (NTP, a manual clock in a test) must not stretch or shrink.
//! They stay on `Instant`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (UTC).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// The system clock's time, for what runs outside a gateway (the CLI,
/// tests comparing with a gateway on the system clock).
pub fn system_now_ms() -> i64 {
    SystemClock.now_ms()
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn starting_at(now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now_ms: AtomicI64::new(now_ms),
        })
    }

    pub fn set(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by_ms: i64) {
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
