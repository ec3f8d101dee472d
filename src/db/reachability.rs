//! Whether the database answered the last checkout of a connection, for
//! callers that have an answer without it (a cached token past its TTL,
//! `crate::gateway::auth`). A stopped server refuses a connection at once,
//! but one silent behind a network partition holds every checkout for the
//! whole `connect_timeout`: such callers ask here instead of waiting each
//! time (`tests/outage.rs`, `a_partitioned_database_...`).

use super::{DbError, checkout_timeout};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// How often, while checkouts fail, one caller of [`Reachability::may_try`]
/// is told to try the database again.
const RETRY_WHILE_FAILING_MS: i64 = 1_000;

#[derive(Debug, Default)]
pub(crate) struct Reachability {
    /// Set by a failed checkout, cleared by a successful one.
    failing: AtomicBool,
    /// While failing, when a caller may next try the database (Unix ms).
    next_try_ms: AtomicI64,
}

impl Reachability {
    fn note(&self, reached: bool) {
        // Read first: a checkout that changes nothing writes nothing.
        if self.failing.load(Ordering::Relaxed) == reached {
            self.failing.store(!reached, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// True for one caller per [`RETRY_WHILE_FAILING_MS`].
    pub(crate) fn may_try(&self, now_ms: i64) -> bool {
        let due = self.next_try_ms.load(Ordering::Relaxed);
        now_ms >= due
            && self
                .next_try_ms
                .compare_exchange(
                    due,
                    now_ms.saturating_add(RETRY_WHILE_FAILING_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// [`checkout_timeout`], noting in `reach` whether it found the database.
pub(crate) async fn checkout<T, E: std::fmt::Display>(
    reach: &Reachability,
    timeout: Duration,
    get: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    let result = checkout_timeout(timeout, get).await;
    reach.note(result.is_ok());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_checkout_is_remembered_until_one_succeeds() {
        let reach = Reachability::default();
        let refused = checkout(&reach, Duration::from_secs(1), async {
            Err::<(), _>("connection refused")
        })
        .await;
        assert!(matches!(refused, Err(DbError::Pool(_))));
        assert!(reach.is_failing());
        let silent = checkout(
            &reach,
            Duration::from_millis(10),
            std::future::pending::<Result<(), &str>>(),
        )
        .await;
        assert!(matches!(silent, Err(DbError::Pool(_))));
        assert!(reach.is_failing());
        assert!(
            checkout(&reach, Duration::from_secs(1), async { Ok::<_, &str>(()) })
                .await
                .is_ok()
        );
        assert!(!reach.is_failing());
    }

    #[test]
    fn one_caller_a_second_may_try_again() {
        let reach = Reachability::default();
        assert!(reach.may_try(10_000));
        assert!(!reach.may_try(10_000));
        assert!(!reach.may_try(10_999));
        assert!(reach.may_try(11_000));
        assert!(!reach.may_try(11_500));
    }
}
