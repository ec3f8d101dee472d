//! Budget and balance reservations held in the database, so that every
//! gateway instance sharing it sees the same holds.
//!
//! **Slices** (issue 11: one write transaction per request cost 75-80% of a
//! budgeted token's throughput). An instance does not reserve per request:
//! it leases a slice of a token's budget (and of its owner's prepaid
//! balance) with [`Db::swap_slice`], one reservation row per instance and
//! token, and draws requests' estimates from it in memory
//! (`crate::enforce`). The usage batch moves each request's real spend
//! from the slice's row and the token's `reserved_*` into `spent_*`
//! (`crate::db::usage`). A lease is the same conditional UPDATE as below,
//! for `max(estimate, fraction x what is left)`, so the invariant
//! `spent + reserved <= budget` holds across instances exactly as before.
//!
//! Per-request admission ([`Db::reserve`], kept for tools and tests) is one
//! conditional UPDATE per limited row, in one transaction:
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

/// Amounts held by a slice (or given back, or leased).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Against the token's money budget (nano-USD).
    pub nanos: i64,
    /// Against the token's token budget.
    pub tokens: i64,
    /// Against the owner's prepaid balance.
    pub user_nanos: i64,
}

impl Amounts {
    pub fn is_zero(self) -> bool {
        self.nanos == 0 && self.tokens == 0 && self.user_nanos == 0
    }
}

/// Which of a slice's amounts are limited (the others are leased as 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limited {
    pub nanos: bool,
    pub tokens: bool,
    pub user_nanos: bool,
}

/// What a lease needs: at least `need` in each limited amount, and up to
/// `fraction` of what is left when that is more.
#[derive(Debug, Clone, Copy)]
pub struct LeaseNeed {
    pub need: Amounts,
    pub limited: Limited,
    pub fraction: f64,
}

/// One slice operation, in one transaction: give back `give_back` from the
/// slice's row (never more than it holds), renew its expiry, then lease.
#[derive(Debug, Clone, Copy)]
pub struct SliceSwap {
    pub token_id: i64,
    pub user_id: Option<i64>,
    /// The instance's row for this token, if it has one.
    pub reservation_id: Option<i64>,
    pub give_back: Amounts,
    /// `None`: only give back (an idle slice, a token whose limits changed).
    pub lease: Option<LeaseNeed>,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// What [`Db::swap_slice`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceOutcome {
    /// Leased `amounts` into the row `reservation_id`; `new_row` when the
    /// row was created (the instance had none, or its row was gone: given
    /// back by the expiry sweep, or emptied and deleted by the usage batch).
    Leased {
        reservation_id: i64,
        amounts: Amounts,
        new_row: bool,
    },
    /// The lease was refused; what was to be given back was given back.
    Refused(HoldRefused),
    /// Given back only.
    Returned,
}

/// A token's budgets, spend and holds, as a lease reads them back:
/// `(budget_nanos, budget_tokens, spent_nanos, spent_tokens, reserved_nanos,
/// reserved_tokens)`.
type TokenBudgetRow = (Option<i64>, Option<i64>, i64, i64, i64, i64);

/// `fraction` of `left`, less `need` already leased, never negative.
fn extra(left: i64, need: i64, fraction: f64) -> i64 {
    let slice = (left.max(0) as f64 * fraction) as i64;
    slice.saturating_sub(need).max(0)
}

impl Db {
    /// Gives back part of an instance's slice and leases more, in one
    /// transaction (see [`SliceSwap`]). Giving back first means a lease is
    /// refused only when the slice and the free budget together cannot
    /// cover the request, and a refused instance keeps nothing stranded.
    pub async fn swap_slice(&self, swap: SliceSwap) -> Result<SliceOutcome, DbError> {
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                use gateway_tokens::dsl as t;
                use reservations::dsl as r;
                // Renewing first also takes the row's lock (PostgreSQL) and
                // the write lock (SQLite) before anything is read.
                let mut row: Option<Amounts> = None;
                if let Some(id) = swap.reservation_id {
                    let held: Option<(i64, i64, i64)> = diesel::update(r::reservations.find(id))
                        .set(r::expires_at.eq(swap.expires_at_ms))
                        .returning((r::nanos, r::tokens, r::user_nanos))
                        .get_result(conn)
                        .await
                        .optional()?;
                    row = held.map(|(nanos, tokens, user_nanos)| Amounts {
                        nanos,
                        tokens,
                        user_nanos,
                    });
                }
                if let (Some(id), Some(held)) = (swap.reservation_id, row.as_mut()) {
                    let take = Amounts {
                        nanos: swap.give_back.nanos.clamp(0, held.nanos.max(0)),
                        tokens: swap.give_back.tokens.clamp(0, held.tokens.max(0)),
                        user_nanos: swap.give_back.user_nanos.clamp(0, held.user_nanos.max(0)),
                    };
                    if !take.is_zero() {
                        diesel::update(r::reservations.find(id))
                            .set((
                                r::nanos.eq(r::nanos - take.nanos),
                                r::tokens.eq(r::tokens - take.tokens),
                                r::user_nanos.eq(r::user_nanos - take.user_nanos),
                            ))
                            .execute(conn)
                            .await?;
                        give_back!(
                            conn,
                            swap.token_id,
                            swap.user_id,
                            take.nanos,
                            take.tokens,
                            take.user_nanos
                        );
                        held.nanos -= take.nanos;
                        held.tokens -= take.tokens;
                        held.user_nanos -= take.user_nanos;
                    }
                }
                let empty_row = row.is_some_and(|held| {
                    held.nanos <= 0 && held.tokens <= 0 && held.user_nanos <= 0
                });
                let Some(lease) = swap.lease else {
                    if let (Some(id), true) = (swap.reservation_id, empty_row) {
                        diesel::delete(r::reservations.find(id))
                            .execute(conn)
                            .await?;
                    }
                    return Ok::<_, diesel::result::Error>(SliceOutcome::Returned);
                };
                let need = Amounts {
                    nanos: if lease.limited.nanos {
                        lease.need.nanos.max(0)
                    } else {
                        0
                    },
                    tokens: if lease.limited.tokens {
                        lease.need.tokens.max(0)
                    } else {
                        0
                    },
                    user_nanos: if lease.limited.user_nanos {
                        lease.need.user_nanos.max(0)
                    } else {
                        0
                    },
                };
                // A limit already reached refuses even a zero estimate.
                let (check_nanos, check_tokens) = (need.nanos.max(1), need.tokens.max(1));
                let token_row: Option<TokenBudgetRow> = diesel::update(
                    t::gateway_tokens.filter(
                        t::id
                            .eq(swap.token_id)
                            .and(
                                t::budget_nanos.is_null().or(t::budget_nanos
                                    .assume_not_null()
                                    .ge(t::spent_nanos + t::reserved_nanos + check_nanos)),
                            )
                            .and(
                                t::budget_tokens.is_null().or(t::budget_tokens
                                    .assume_not_null()
                                    .ge(t::spent_tokens + t::reserved_tokens + check_tokens)),
                            ),
                    ),
                )
                .set((
                    t::reserved_nanos.eq(t::reserved_nanos + need.nanos),
                    t::reserved_tokens.eq(t::reserved_tokens + need.tokens),
                ))
                .returning((
                    t::budget_nanos,
                    t::budget_tokens,
                    t::spent_nanos,
                    t::spent_tokens,
                    t::reserved_nanos,
                    t::reserved_tokens,
                ))
                .get_result(conn)
                .await
                .optional()?;
                let Some((
                    budget_nanos,
                    budget_tokens,
                    spent_nanos,
                    spent_tokens,
                    res_nanos,
                    res_tokens,
                )) = token_row
                else {
                    if let (Some(id), true) = (swap.reservation_id, empty_row) {
                        diesel::delete(r::reservations.find(id))
                            .execute(conn)
                            .await?;
                    }
                    return Ok(SliceOutcome::Refused(HoldRefused::TokenBudget));
                };
                // What was left before this lease; the slice is a fraction
                // of it, which always fits since the need did.
                let extra_nanos = match budget_nanos {
                    Some(budget) if lease.limited.nanos => extra(
                        budget - spent_nanos - (res_nanos - need.nanos),
                        need.nanos,
                        lease.fraction,
                    ),
                    _ => 0,
                };
                let extra_tokens = match budget_tokens {
                    Some(budget) if lease.limited.tokens => extra(
                        budget - spent_tokens - (res_tokens - need.tokens),
                        need.tokens,
                        lease.fraction,
                    ),
                    _ => 0,
                };
                if extra_nanos != 0 || extra_tokens != 0 {
                    diesel::update(t::gateway_tokens.find(swap.token_id))
                        .set((
                            t::reserved_nanos.eq(t::reserved_nanos + extra_nanos),
                            t::reserved_tokens.eq(t::reserved_tokens + extra_tokens),
                        ))
                        .execute(conn)
                        .await?;
                }
                let mut leased = Amounts {
                    nanos: need.nanos + extra_nanos,
                    tokens: need.tokens + extra_tokens,
                    user_nanos: 0,
                };
                if let (Some(user_id), true) = (swap.user_id, lease.limited.user_nanos) {
                    use users::dsl as u;
                    let check_user = need.user_nanos.max(1);
                    let user_row: Option<(i64, i64)> = diesel::update(
                        u::users.filter(
                            u::id
                                .eq(user_id)
                                .and(u::balance_nanos.ge(u::reserved_nanos + check_user)),
                        ),
                    )
                    .set(u::reserved_nanos.eq(u::reserved_nanos + need.user_nanos))
                    .returning((u::balance_nanos, u::reserved_nanos))
                    .get_result(conn)
                    .await
                    .optional()?;
                    let Some((balance, reserved)) = user_row else {
                        // Undo the token's part: this transaction holds its
                        // row, so the undo is exact.
                        diesel::update(t::gateway_tokens.find(swap.token_id))
                            .set((
                                t::reserved_nanos.eq(t::reserved_nanos - leased.nanos),
                                t::reserved_tokens.eq(t::reserved_tokens - leased.tokens),
                            ))
                            .execute(conn)
                            .await?;
                        if let (Some(id), true) = (swap.reservation_id, empty_row) {
                            diesel::delete(r::reservations.find(id))
                                .execute(conn)
                                .await?;
                        }
                        return Ok(SliceOutcome::Refused(HoldRefused::Balance));
                    };
                    let extra_user = extra(
                        balance - (reserved - need.user_nanos),
                        need.user_nanos,
                        lease.fraction,
                    );
                    if extra_user != 0 {
                        diesel::update(u::users.find(user_id))
                            .set(u::reserved_nanos.eq(u::reserved_nanos + extra_user))
                            .execute(conn)
                            .await?;
                    }
                    leased.user_nanos = need.user_nanos + extra_user;
                }
                match (swap.reservation_id, row) {
                    (Some(id), Some(_)) => {
                        diesel::update(r::reservations.find(id))
                            .set((
                                r::nanos.eq(r::nanos + leased.nanos),
                                r::tokens.eq(r::tokens + leased.tokens),
                                r::user_nanos.eq(r::user_nanos + leased.user_nanos),
                            ))
                            .execute(conn)
                            .await?;
                        Ok(SliceOutcome::Leased {
                            reservation_id: id,
                            amounts: leased,
                            new_row: false,
                        })
                    }
                    _ => {
                        let id: i64 = diesel::insert_into(r::reservations)
                            .values((
                                r::token_id.eq(swap.token_id),
                                r::user_id.eq(swap.user_id),
                                r::nanos.eq(leased.nanos),
                                r::tokens.eq(leased.tokens),
                                r::user_nanos.eq(leased.user_nanos),
                                r::created_at.eq(swap.now_ms),
                                r::expires_at.eq(swap.expires_at_ms),
                            ))
                            .returning(r::id)
                            .get_result(conn)
                            .await?;
                        Ok(SliceOutcome::Leased {
                            reservation_id: id,
                            amounts: leased,
                            new_row: true,
                        })
                    }
                }
            })
            .await
        })
    }

    /// Pushes the expiry of an instance's live slices to `expires_at_ms`
    /// (their instance is alive and still uses them). Returns the ids that
    /// still exist.
    pub async fn renew_slices(
        &self,
        ids: Vec<i64>,
        expires_at_ms: i64,
    ) -> Result<Vec<i64>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.sqlite_write_turn().await;
        run_query!(self, |conn| {
            diesel::update(reservations::table.filter(reservations::id.eq_any(ids)))
                .set(reservations::expires_at.eq(expires_at_ms))
                .returning(reservations::id)
                .get_results(conn)
                .await
        })
    }

    /// What a reservation row holds now (tests, admin views).
    pub async fn reservation(&self, id: i64) -> Result<Option<Amounts>, DbError> {
        run_query!(self, |conn| {
            reservations::table
                .find(id)
                .select((
                    reservations::nanos,
                    reservations::tokens,
                    reservations::user_nanos,
                ))
                .first::<(i64, i64, i64)>(conn)
                .await
                .optional()
                .map(|row| {
                    row.map(|(nanos, tokens, user_nanos)| Amounts {
                        nanos,
                        tokens,
                        user_nanos,
                    })
                })
        })
    }

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
