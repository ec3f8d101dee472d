//! Bounded storage (issue 13, item 6): request logs older than
//! `usage.retention` (default 30 days, `0s` = forever) are deleted by a
//! background task, never on the request path.
//!
//! - The cutoff is `now - retention` rounded down to a whole UTC hour
//!   ([`cutoff_ms`]): every hour whose rows are deleted is whole in the
//!   hourly and daily rollups (`crate::db::rollups`), which are kept, so the
//!   admin metrics answer the same counts, tokens and cost for old ranges
//!   after the deletion (`crate::admin::metrics` reads ranges reaching past
//!   the cutoff from the rollups only).
//! - Deletion is in batches of `usage.retention_batch_rows` (5,000) rows per
//!   statement, oldest first, with `usage.retention_batch_pause` between
//!   two: each statement is a short transaction, so neither PostgreSQL's
//!   table nor SQLite's single writer is held long enough to delay the usage
//!   writer.
//! - It runs shortly after the start and then every
//!   `usage.retention_interval` (1 h). Instances sharing a database may each
//!   run it: deleting rows another instance just deleted deletes nothing.
//! - Nothing else refers to a request log row (billing records and the
//!   usage dead letters stand alone), so only `request_logs` is touched.
//!
//! Export the rows first with `switchyard admin logs export` (docs/retention.md).

use crate::clock::Clock;
use crate::config::UsageSettings;
use crate::db::rollups::HOUR_MS;
use crate::db::{Db, DbError};
use slog::{Logger, info, warn};
use std::sync::Arc;
use std::time::Duration;

/// Request logs created before this instant (unix ms) are due for deletion:
/// `now - retention`, rounded down to a whole hour; `None` when `retention`
/// is zero (kept forever).
pub fn cutoff_ms(now_ms: i64, retention: Duration) -> Option<i64> {
    if retention.is_zero() {
        return None;
    }
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(retention_ms);
    Some(cutoff.div_euclid(HOUR_MS) * HOUR_MS)
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Statements that deleted at least one row.
    pub batches: usize,
    /// Rows deleted in all.
    pub rows: usize,
}

/// Deletes every request log created before `cutoff_ms`, `batch` rows per
/// statement with `pause` between two statements, until a statement finds
/// fewer than `batch`.
pub async fn sweep(
    db: &Db,
    cutoff_ms: i64,
    batch: i64,
    pause: Duration,
) -> Result<SweepReport, DbError> {
    let batch = batch.max(1);
    let mut report = SweepReport::default();
    loop {
        let deleted = db.delete_request_logs_before(cutoff_ms, batch).await?;
        if deleted > 0 {
            report.batches += 1;
            report.rows += deleted;
        }
        if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
            return Ok(report);
        }
        if !pause.is_zero() {
            actix_rt::time::sleep(pause).await;
        }
    }
}

/// Starts the retention task on the current arbiter (nothing when
/// `usage.retention` is zero). The queries run on the database's own
/// runtime, so stopping the arbiter never cancels one half-way.
pub fn start(db: Db, clock: Arc<dyn Clock>, settings: &UsageSettings, log: Logger) {
    if settings.retention.is_zero() {
        info!(log, "retention.off"; "reason" => "usage.retention is 0s: request logs are kept forever");
        return;
    }
    let retention = settings.retention;
    let every = settings.retention_interval.max(Duration::from_millis(100));
    let batch = settings.retention_batch_rows;
    let pause = settings.retention_batch_pause;
    actix_rt::spawn(async move {
        // The first sweep soon after the start (not at it: the start has
        // enough to do), then every interval.
        let first = every.min(Duration::from_secs(60));
        let mut tick = actix_rt::time::interval_at(actix_rt::time::Instant::now() + first, every);
        loop {
            tick.tick().await;
            let Some(cutoff) = cutoff_ms(clock.now_ms(), retention) else {
                return;
            };
            match sweep(&db, cutoff, batch, pause).await {
                Ok(report) if report.rows > 0 => info!(
                    log, "retention.deleted";
                    "rows" => report.rows, "batches" => report.batches, "cutoff_ms" => cutoff
                ),
                Ok(_) => {}
                Err(error) => warn!(log, "retention.failed"; "error" => %error),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_a_whole_hour_before_the_retention() {
        let day = Duration::from_secs(86_400);
        assert_eq!(cutoff_ms(1_000, Duration::ZERO), None);
        // 2026-01-02T00:30Z with one day kept: 2026-01-01T00:00Z.
        let now = 1_767_225_600_000 + 86_400_000 + 30 * 60_000;
        assert_eq!(cutoff_ms(now, day), Some(1_767_225_600_000));
        assert_eq!(cutoff_ms(0, day), Some(-86_400_000));
    }
}
