//! Shares of rate limits, parallelism and quotas leased to instances, so
//! that several instances sharing PostgreSQL enforce a token's limits
//! together (docs/limits.md, "Limits across instances"; the in-memory side
//! is `crate::shared_limits`).
//!
//! One row of `limit_shares` per token, limit, period and instance holds
//! how much of the limit that instance may admit; a row counts while its
//! `expires_at` is ahead (live instances renew theirs; a crashed instance's
//! rows stop counting after the TTL). Every change of a limit's shares runs
//! in a transaction that first upserts the limit's `limit_pools` row: the
//! upsert takes that row's lock (PostgreSQL; SQLite serialises writers
//! anyway), so two instances leasing the same limit at once are serialised
//! and the live shares never add up to more than the limit.

use super::schema::{limit_pools, limit_shares};
use super::{Db, DbError};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Which limit of which token, in which period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub token_id: i64,
    /// `rpm`, `tpm`, `parallel`, `quota:<period>:<kind>`.
    pub limit_key: String,
    /// The quota period's start; 0 for the sliding-window limits.
    pub period_start: i64,
    pub instance_id: String,
}

/// A lease: at least `need` more, and up to `fraction` of what no instance
/// holds when that is more.
#[derive(Debug, Clone)]
pub struct ShareLease {
    pub row: ShareRow,
    /// The limit as configured now.
    pub limit: i64,
    pub need: i64,
    pub fraction: f64,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// What a lease left this instance holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leased {
    /// The instance's whole share now (its live row).
    pub amount: i64,
    /// Whether the lease was granted (`need` fitted).
    pub granted: bool,
}

/// Locks the limit's pool row until the transaction ends (see the module
/// docs). A macro for the reason `give_back!` in `reservations.rs` is one.
macro_rules! lock_pool {
    ($conn:expr, $row:expr, $expires_at:expr) => {{
        use $crate::db::schema::limit_pools::dsl as p;
        diesel::insert_into(p::limit_pools)
            .values((
                p::token_id.eq($row.token_id),
                p::limit_key.eq(&$row.limit_key),
                p::period_start.eq($row.period_start),
                p::leases.eq(1i64),
                p::expires_at.eq($expires_at),
            ))
            .on_conflict((p::token_id, p::limit_key, p::period_start))
            .do_update()
            .set((
                p::leases.eq(p::leases + 1),
                p::expires_at.eq(excluded(p::expires_at)),
            ))
            .execute($conn)
            .await?;
    }};
}

/// `fraction` of `free`, at least `need`, at most `free`; 0 when `need`
/// does not fit.
fn grant(free: i64, need: i64, fraction: f64) -> i64 {
    if need > free {
        return 0;
    }
    let slice = (free.max(0) as f64 * fraction) as i64;
    slice.clamp(need, free)
}

impl Db {
    /// Leases more of a limit for an instance (see [`ShareLease`]); one
    /// transaction, serialised with every other change of that limit.
    pub async fn lease_share(&self, lease: ShareLease) -> Result<Leased, DbError> {
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                use limit_shares::dsl as s;
                let row = &lease.row;
                lock_pool!(conn, row, lease.expires_at_ms);
                let live: Vec<(String, i64)> = s::limit_shares
                    .filter(s::token_id.eq(row.token_id))
                    .filter(s::limit_key.eq(&row.limit_key))
                    .filter(s::period_start.eq(row.period_start))
                    .filter(s::expires_at.gt(lease.now_ms))
                    .select((s::instance_id, s::amount))
                    .load(conn)
                    .await?;
                let mine: i64 = live
                    .iter()
                    .filter(|(instance, _)| *instance == row.instance_id)
                    .map(|(_, amount)| *amount)
                    .sum();
                let all: i64 = live
                    .iter()
                    .fold(0i64, |sum, (_, amount)| sum.saturating_add(*amount));
                let granted = grant(
                    lease.limit.saturating_sub(all),
                    lease.need.max(1),
                    lease.fraction,
                );
                let amount = mine.saturating_add(granted);
                // Written even when nothing was granted: an expired row of
                // this instance restarts from what is live (0), never from
                // what the row held when others could already lease it.
                diesel::insert_into(s::limit_shares)
                    .values((
                        s::token_id.eq(row.token_id),
                        s::limit_key.eq(&row.limit_key),
                        s::period_start.eq(row.period_start),
                        s::instance_id.eq(&row.instance_id),
                        s::amount.eq(amount),
                        s::expires_at.eq(lease.expires_at_ms),
                    ))
                    .on_conflict((s::token_id, s::limit_key, s::period_start, s::instance_id))
                    .do_update()
                    .set((
                        s::amount.eq(excluded(s::amount)),
                        s::expires_at.eq(excluded(s::expires_at)),
                    ))
                    .execute(conn)
                    .await?;
                Ok::<_, diesel::result::Error>(Leased {
                    amount,
                    granted: granted > 0,
                })
            })
            .await
        })
    }

    /// Gives `amount` of an instance's share back (never more than its live
    /// row holds; an emptied row is deleted). `expires_at_ms`, when given,
    /// brings the row's expiry forward (never back): at shutdown, the
    /// share still occupied by the last minute's requests frees itself when
    /// they leave the window.
    pub async fn give_back_share(
        &self,
        row: ShareRow,
        amount: i64,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), DbError> {
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                use limit_shares::dsl as s;
                lock_pool!(conn, row, now_ms);
                let key = s::limit_shares.find((
                    row.token_id,
                    &row.limit_key,
                    row.period_start,
                    &row.instance_id,
                ));
                let held: Option<(i64, i64)> = key
                    .filter(s::expires_at.gt(now_ms))
                    .select((s::amount, s::expires_at))
                    .first(conn)
                    .await
                    .optional()?;
                let Some((held, expires_at)) = held else {
                    return Ok::<_, diesel::result::Error>(());
                };
                let left = held.saturating_sub(amount.max(0)).max(0);
                if left == 0 {
                    diesel::delete(key).execute(conn).await?;
                } else {
                    let expires_at = expires_at_ms.map_or(expires_at, |at| at.min(expires_at));
                    diesel::update(key)
                        .set((s::amount.eq(left), s::expires_at.eq(expires_at)))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
        })
    }

    /// Pushes the expiry of an instance's live sliding-window and
    /// parallelism shares to `expires_at_ms` (quota shares last until their
    /// period ends). Rows already expired stay so: others may have leased
    /// what they held.
    pub async fn renew_shares(
        &self,
        instance_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<usize, DbError> {
        let instance_id = instance_id.to_owned();
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            use limit_shares::dsl as s;
            diesel::update(
                s::limit_shares
                    .filter(s::instance_id.eq(&instance_id))
                    .filter(s::period_start.eq(0))
                    .filter(s::expires_at.gt(now_ms)),
            )
            .set(s::expires_at.eq(expires_at_ms))
            .execute(conn)
            .await
        })
    }

    /// Deletes expired shares and pool rows (housekeeping: an expired row
    /// already counts for nothing).
    pub async fn sweep_shares(&self, now_ms: i64) -> Result<usize, DbError> {
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            use limit_pools::dsl as p;
            use limit_shares::dsl as s;
            let shares = diesel::delete(s::limit_shares.filter(s::expires_at.le(now_ms)))
                .execute(conn)
                .await?;
            diesel::delete(p::limit_pools.filter(p::expires_at.le(now_ms)))
                .execute(conn)
                .await?;
            Ok(shares)
        })
    }

    /// Every live share of a token, `(limit_key, period_start, instance_id,
    /// amount)` (tests, the admin view).
    pub async fn token_shares(
        &self,
        token_id: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, i64, String, i64)>, DbError> {
        run_query!(self, |conn| {
            use limit_shares::dsl as s;
            s::limit_shares
                .filter(s::token_id.eq(token_id))
                .filter(s::expires_at.gt(now_ms))
                .select((s::limit_key, s::period_start, s::instance_id, s::amount))
                .order((s::limit_key, s::instance_id))
                .load(conn)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::grant;

    #[test]
    fn a_grant_is_a_fraction_of_what_is_free_but_at_least_the_need() {
        assert_eq!(grant(80, 1, 0.125), 10);
        assert_eq!(grant(4, 1, 0.125), 1);
        assert_eq!(grant(4, 3, 0.125), 3);
        assert_eq!(grant(2, 3, 0.125), 0);
        assert_eq!(grant(0, 1, 0.125), 0);
        assert_eq!(grant(10, 1, 2.0), 10);
    }
}
