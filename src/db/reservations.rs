//! Budget and balance reservations held in the database, so that every
//! gateway instance sharing it sees the same holds.
//!
//! Admission is one conditional UPDATE per limited row, in one transaction:
//! `... SET reserved = reserved + e WHERE spent + reserved + e <= limit`. The
//! row lock the UPDATE takes serialises concurrent admissions on PostgreSQL
//! (and SQLite serialises writers anyway), so requests admitted together can
//! never hold more than the limit, whichever instance admitted them. The
//! reservation row records what was held; the usage batch that writes the
//! request's log deletes it and gives the hold back, in the same transaction
//! that adds the real spend. Reservations of requests that never settle (a
//! crashed instance) expire and are given back by [`Db::expire_reservations`].

use super::schema::{gateway_tokens, reservations, users};
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Subtracts a reservation's holds from its token (and owner). A macro
/// rather than a function: `run_query!` expands its body once per backend,
/// each with its own connection type, and diesel-async's bounds for a
/// function generic over both are far longer than these two statements.
macro_rules! give_back {
    ($conn:expr, $token_id:expr, $user_id:expr, $nanos:expr, $tokens:expr, $user_nanos:expr) => {{
        use $crate::db::schema::gateway_tokens::dsl as t;
        diesel::update(t::gateway_tokens.find($token_id))
            .set((
                t::reserved_nanos.eq(t::reserved_nanos - $nanos),
                t::reserved_tokens.eq(t::reserved_tokens - $tokens),
            ))
            .execute($conn)
            .await?;
        if let Some(user_id) = $user_id
            && $user_nanos != 0
        {
            use $crate::db::schema::users::dsl as u;
            diesel::update(u::users.find(user_id))
                .set(u::reserved_nanos.eq(u::reserved_nanos - $user_nanos))
                .execute($conn)
                .await?;
        }
    }};
}

/// What one request holds while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub token_id: i64,
    pub user_id: Option<i64>,
    /// Against the token's money budget (nano-USD).
    pub nanos: i64,
    /// Against the token's token budget.
    pub tokens: i64,
    /// Against the owner's prepaid balance (0 when the owner is not prepaid).
    pub user_nanos: i64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldRefused {
    /// The token's money or token budget cannot cover the estimate.
    TokenBudget,
    /// The owner's prepaid balance cannot cover the estimate.
    Balance,
}

/// A transaction outcome that is not a database failure.
enum Outcome {
    Refused(HoldRefused),
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for Outcome {
    fn from(error: diesel::result::Error) -> Self {
        Outcome::Failed(error)
    }
}

impl Db {
    /// Holds `hold` against the token's budgets and the owner's balance,
    /// all or nothing. `Ok(Err(_))` says which refused.
    pub async fn reserve(
        &self,
        hold: Hold,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Result<i64, HoldRefused>, DbError> {
        // A limit already reached refuses even a zero estimate.
        let need_nanos = hold.nanos.max(1);
        let need_tokens = hold.tokens.max(1);
        let need_user = hold.user_nanos.max(1);
        let _turn = self.sqlite_write_turn().await;
        let outcome: Result<i64, Outcome> = run_query!(self, |conn| {
            Ok(conn
                .transaction(async |conn| {
                    use gateway_tokens::dsl as t;
                    let held = diesel::update(
                        t::gateway_tokens.filter(
                            t::id
                                .eq(hold.token_id)
                                .and(
                                    t::budget_nanos.is_null().or(t::budget_nanos
                                        .assume_not_null()
                                        .ge(t::spent_nanos + t::reserved_nanos + need_nanos)),
                                )
                                .and(
                                    t::budget_tokens.is_null().or(t::budget_tokens
                                        .assume_not_null()
                                        .ge(t::spent_tokens + t::reserved_tokens + need_tokens)),
                                ),
                        ),
                    )
                    .set((
                        t::reserved_nanos.eq(t::reserved_nanos + hold.nanos),
                        t::reserved_tokens.eq(t::reserved_tokens + hold.tokens),
                    ))
                    .execute(conn)
                    .await?;
                    if held == 0 {
                        return Err(Outcome::Refused(HoldRefused::TokenBudget));
                    }
                    if let Some(user_id) = hold.user_id
                        && hold.user_nanos > 0
                    {
                        use users::dsl as u;
                        let held = diesel::update(
                            u::users.filter(
                                u::id
                                    .eq(user_id)
                                    .and(u::balance_nanos.ge(u::reserved_nanos + need_user)),
                            ),
                        )
                        .set(u::reserved_nanos.eq(u::reserved_nanos + hold.user_nanos))
                        .execute(conn)
                        .await?;
                        if held == 0 {
                            return Err(Outcome::Refused(HoldRefused::Balance));
                        }
                    }
                    use reservations::dsl as r;
                    let id: i64 = diesel::insert_into(r::reservations)
                        .values((
                            r::token_id.eq(hold.token_id),
                            r::user_id.eq(hold.user_id),
                            r::nanos.eq(hold.nanos),
                            r::tokens.eq(hold.tokens),
                            r::user_nanos.eq(hold.user_nanos),
                            r::created_at.eq(now_ms),
                            r::expires_at.eq(expires_at_ms),
                        ))
                        .returning(r::id)
                        .get_result(conn)
                        .await?;
                    Ok(id)
                })
                .await)
        })?;
        match outcome {
            Ok(id) => Ok(Ok(id)),
            Err(Outcome::Refused(why)) => Ok(Err(why)),
            Err(Outcome::Failed(error)) => Err(DbError::from(error)),
        }
    }

    /// Gives back the holds of reservations that expired before `now_ms`
    /// (requests that never settled). Returns how many. Safe to run on every
    /// instance at once: a reservation is given back by whoever deletes it.
    pub async fn expire_reservations(&self, now_ms: i64) -> Result<usize, DbError> {
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                let expired: Vec<(i64, i64, Option<i64>, i64, i64, i64)> =
                    diesel::delete(reservations::table.filter(reservations::expires_at.lt(now_ms)))
                        .returning((
                            reservations::id,
                            reservations::token_id,
                            reservations::user_id,
                            reservations::nanos,
                            reservations::tokens,
                            reservations::user_nanos,
                        ))
                        .get_results(conn)
                        .await?;
                for (_, token_id, user_id, nanos, tokens, user_nanos) in &expired {
                    give_back!(conn, *token_id, *user_id, *nanos, *tokens, *user_nanos);
                }
                Ok::<_, diesel::result::Error>(expired.len())
            })
            .await
        })
    }

    /// Reservations currently held (tests, admin views).
    pub async fn count_reservations(&self) -> Result<i64, DbError> {
        run_query!(self, |conn| {
            reservations::table.count().get_result(conn).await
        })
    }
}
