//! Whether the database answered the last checkout of a connection.
//!
//! A stopped server refuses a connection at once, but one silent behind a
//! network partition holds every checkout for the whole `connect_timeout`
//! (`tests/outage.rs`, `a_partitioned_database_...`). So:
//! - callers that have an answer without the database (a cached token past
//!   its TTL, `crate::gateway::auth`) ask [`Reachability::is_failing`]
//!   instead of waiting each time;
//! - once a checkout has timed out with room in the pool (the database did
//!   not answer, the pool was not merely busy), the next ones fail at once,
//!   but for one caller a second that tries the database again. Without
//!   that, every request that needs the database (a token never read, a
//!   budget's next slice, an admin read) held its request slot for the
//!   whole timeout before its 503. A refused checkout fails fast by
//!   itself, so it sets no such gate: the first caller after the server's
//!   return finds it.

use super::{DbError, timed_checkout};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often, while checkouts fail, one caller of [`Reachability::may_try`]
/// is told to try the database again, and one checkout passes the gate
/// of a silent database.
const RETRY_WHILE_FAILING_MS: u64 = 1_000;

#[derive(Debug)]
pub(crate) struct Reachability {
    /// Set by a failed checkout, cleared by a successful one.
    failing: AtomicBool,
    /// While failing, when a caller may next try the database.
    next_try_ms: AtomicU64,
    /// Set by a checkout that timed out with room in the pool; cleared by
    /// one that succeeds or is refused.
    silent: AtomicBool,
    /// While silent, when the next checkout may try.
    next_probe_ms: AtomicU64,
    /// What the two times above count milliseconds from: they time spans,
    /// so on the monotonic clock (`crate::clock`), which a wall clock step
    /// or a test's manual clock does not move.
    since: Instant,
}

impl Default for Reachability {
    fn default() -> Self {
        Self {
            failing: AtomicBool::new(false),
            next_try_ms: AtomicU64::new(0),
            silent: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(0),
            since: Instant::now(),
        }
    }
}

/// How a checkout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Reached,
    /// An error (refused, authentication, ...): the database, or something
    /// in its place, answered.
    Refused,
    /// No connection within the timeout while every one was in use: the
    /// pool may just be busy.
    Busy,
    /// No connection within the timeout with room in the pool: a new or
    /// recycled connection got no answer.
    Silent,
}

impl Reachability {
    fn note(&self, outcome: Outcome) {
        // Read first: a checkout that changes nothing writes nothing.
        let failing = outcome != Outcome::Reached;
        if self.failing.load(Ordering::Relaxed) != failing {
            self.failing.store(failing, Ordering::Relaxed);
        }
        match outcome {
            Outcome::Reached | Outcome::Refused => {
                if self.silent.load(Ordering::Relaxed) {
                    self.silent.store(false, Ordering::Relaxed);
                }
            }
            Outcome::Silent => {
                self.next_probe_ms.store(
                    self.elapsed_ms().saturating_add(RETRY_WHILE_FAILING_MS),
                    Ordering::Relaxed,
                );
                self.silent.store(true, Ordering::Relaxed);
            }
            Outcome::Busy => {}
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// True for one caller per [`RETRY_WHILE_FAILING_MS`].
    pub(crate) fn may_try(&self) -> bool {
        claim_turn(&self.next_try_ms, self.elapsed_ms())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a checkout may try now: always, unless the database was
    /// found silent; then once per [`RETRY_WHILE_FAILING_MS`].
    fn may_check_out(&self) -> bool {
        !self.silent.load(Ordering::Relaxed) || claim_turn(&self.next_probe_ms, self.elapsed_ms())
    }
}

/// True for one caller per [`RETRY_WHILE_FAILING_MS`]: the first to come at
/// `now` or after the time in `next`, which it moves a period on.
fn claim_turn(next: &AtomicU64, now: u64) -> bool {
    let due = next.load(Ordering::Relaxed);
    now >= due
        && next
            .compare_exchange(
                due,
                now.saturating_add(RETRY_WHILE_FAILING_MS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// Checks a connection out of a pool within `timeout`, noting in `reach`
/// whether it found the database; fails at once while the database is
/// silent, but for one caller a second (see the module's comment).
/// `pool_full` says whether every connection of the pool is in use.
pub(crate) async fn checkout<T, E: std::fmt::Display>(
    reach: &Reachability,
    timeout: Duration,
    pool_full: impl FnOnce() -> bool,
    get: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    if !reach.may_check_out() {
        return Err(DbError::Pool(format!(
            "the database did not answer within {} ms; trying it again once a second",
            timeout.as_millis()
        )));
    }
    let result = timed_checkout(timeout, get).await;
    reach.note(match &result {
        Ok(_) => Outcome::Reached,
        Err(failure) if !failure.timed_out => Outcome::Refused,
        Err(_) if pool_full() => Outcome::Busy,
        Err(_) => Outcome::Silent,
    });
    result.map_err(|failure| failure.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(1);

    async fn refused(reach: &Reachability) -> Result<(), DbError> {
        checkout(reach, PATIENCE, || false, async {
            Err::<(), _>("connection refused")
        })
        .await
    }

    async fn silent(reach: &Reachability, pool_full: bool) -> Result<(), DbError> {
        checkout(
            reach,
            Duration::from_millis(10),
            || pool_full,
            std::future::pending::<Result<(), &str>>(),
        )
        .await
    }

    async fn reached(reach: &Reachability) -> Result<(), DbError> {
        checkout(reach, PATIENCE, || false, async { Ok::<_, &str>(()) }).await
    }

    #[tokio::test]
    async fn a_failed_checkout_is_remembered_until_one_succeeds() {
        let reach = Reachability::default();
        assert!(matches!(refused(&reach).await, Err(DbError::Pool(_))));
        assert!(reach.is_failing());
        assert!(matches!(silent(&reach, false).await, Err(DbError::Pool(_))));
        assert!(reach.is_failing());
        // The first checkout after the silent one waits out the gate.
        reach.next_probe_ms.store(0, Ordering::Relaxed);
        assert!(reached(&reach).await.is_ok());
        assert!(!reach.is_failing());
    }

    #[tokio::test]
    async fn a_silent_database_lets_one_checkout_a_second_try() {
        let reach = Reachability::default();
        assert!(silent(&reach, false).await.is_err());
        // Within the second: refused at once, without trying.
        let tried = std::cell::Cell::new(false);
        let gated = checkout(&reach, PATIENCE, || false, async {
            tried.set(true);
            Ok::<_, &str>(())
        })
        .await;
        assert!(matches!(gated, Err(DbError::Pool(_))));
        assert!(!tried.get(), "a checkout tried within the second");
        // When the second is over, one caller tries; the next waits again.
        reach.next_probe_ms.store(0, Ordering::Relaxed);
        assert!(reach.may_check_out());
        assert!(!reach.may_check_out());
        // A success opens the gate for everyone.
        reach.next_probe_ms.store(0, Ordering::Relaxed);
        assert!(reached(&reach).await.is_ok());
        assert!(reach.may_check_out() && reach.may_check_out());
    }

    #[tokio::test]
    async fn a_busy_pool_or_a_refusal_sets_no_gate() {
        let reach = Reachability::default();
        // Every connection in use: the checkout was waiting its turn.
        assert!(silent(&reach, true).await.is_err());
        assert!(reach.is_failing());
        assert!(reach.may_check_out() && reach.may_check_out());
        // A refusal after a silence: the server answers again.
        assert!(silent(&reach, false).await.is_err());
        reach.next_probe_ms.store(0, Ordering::Relaxed);
        assert!(refused(&reach).await.is_err());
        assert!(reach.may_check_out() && reach.may_check_out());
    }

    #[test]
    fn one_caller_a_second_may_try_again() {
        let next = AtomicU64::new(0);
        assert!(claim_turn(&next, 10_000));
        assert!(!claim_turn(&next, 10_000));
        assert!(!claim_turn(&next, 10_999));
        assert!(claim_turn(&next, 11_000));
        assert!(!claim_turn(&next, 11_500));
        // The first caller of a fresh gateway may try at once.
        assert!(Reachability::default().may_try());
    }
}
