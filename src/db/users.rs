//! Users: the owners of gateway tokens, with a balance (nano-USD) that
//! top-ups raise and charges lower, both recorded in `billing_records`.

use super::billing::BillingRecord;
use super::schema::{billing_records, gateway_tokens, users};
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

/// A user.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Prepaid balance in nano-USD.
    pub balance_nanos: i64,
    /// `active` or `suspended`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Prepaid users are refused once their balance is spent; the others
    /// run a tab (the balance goes negative).
    pub prepaid: bool,
    /// Price multiplier in parts per million (1,000,000 = x1).
    pub price_multiplier_ppm: Option<i64>,
    /// Estimates held by requests in flight.
    pub reserved_nanos: i64,
}

/// A user as `GET /admin/users/{id}` shows it: [`Db::user_shown`].
#[derive(Debug, Clone)]
pub struct UserShown {
    pub user: User,
    /// Its tokens, by id.
    pub token_ids: Vec<i64>,
    /// What its requests were charged in all, nano-USD.
    pub spent_nanos: i64,
}

impl Db {
    /// Creates an active user with a zero balance; a taken name is a
    /// [`DbError::Conflict`].
    pub async fn create_user(&self, name: &str) -> Result<User, DbError> {
        let name = name.to_owned();
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::name.eq(name),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .returning(User::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// The user with this id, if any.
    pub async fn get_user(&self, id: i64) -> Result<Option<User>, DbError> {
        run_query!(self, |conn| {
            users::table
                .find(id)
                .select(User::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// All users, by id.
    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        run_query!(self, |conn| {
            users::table
                .order(users::id)
                .select(User::as_select())
                .load(conn)
                .await
        })
    }
}

/// A user to create (see [`Db::create_user_with`]).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub prepaid: bool,
    /// Opening balance in nano-USD (recorded as a top-up when positive).
    pub balance_nanos: i64,
    pub price_multiplier_ppm: Option<i64>,
    /// Unix milliseconds, for the opening top-up's billing record.
    pub now_ms: i64,
}

/// What `PATCH /admin/users/{id}` changes; `None` leaves a field alone and
/// `Some(None)` clears a nullable one.
#[derive(AsChangeset, Debug, Clone, Default)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub name: Option<String>,
    pub status: Option<String>,
    pub prepaid: Option<bool>,
    pub price_multiplier_ppm: Option<Option<i64>>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.status.is_none()
            && self.prepaid.is_none()
            && self.price_multiplier_ppm.is_none()
    }
}

/// Why a user was not deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteUser {
    Deleted,
    NotFound,
    /// Tokens still belong to the user (how many).
    HasTokens(i64),
}

impl Db {
    /// Creates a user; an opening balance is a top-up with a billing record,
    /// in the same transaction. A taken name is a [`DbError::Conflict`].
    pub async fn create_user_with(&self, new: &NewUser) -> Result<User, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                let user: User = diesel::insert_into(users::table)
                    .values((
                        users::name.eq(&new.name),
                        users::balance_nanos.eq(new.balance_nanos),
                        users::status.eq("active"),
                        users::prepaid.eq(new.prepaid),
                        users::price_multiplier_ppm.eq(new.price_multiplier_ppm),
                        users::created_at.eq(now),
                        users::updated_at.eq(now),
                    ))
                    .returning(User::as_returning())
                    .get_result(conn)
                    .await?;
                if new.balance_nanos > 0 {
                    use billing_records::dsl as b;
                    diesel::insert_into(b::billing_records)
                        .values((
                            b::created_at.eq(new.now_ms),
                            b::kind.eq(super::billing::KIND_TOPUP),
                            b::user_id.eq(user.id),
                            b::amount_nanos.eq(new.balance_nanos),
                            b::note.eq("opening balance"),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(user)
            })
            .await
        })
    }

    /// The user named `name`, if any.
    pub async fn get_user_by_name(&self, name: &str) -> Result<Option<User>, DbError> {
        let name = name.to_owned();
        run_query!(self, |conn| {
            users::table
                .filter(users::name.eq(name))
                .select(User::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// A page of users, by id, and how many there are.
    pub async fn list_users_page(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<User>, i64), DbError> {
        run_snapshot!(self, |conn| {
            let rows = users::table
                .order(users::id)
                .limit(limit)
                .offset(offset)
                .select(User::as_select())
                .load(conn)
                .await?;
            let total: i64 = users::table.count().get_result(conn).await?;
            Ok((rows, total))
        })
    }

    /// Applies `changes`; `None` when the user does not exist.
    pub async fn update_user(
        &self,
        id: i64,
        changes: &UserChanges,
    ) -> Result<Option<User>, DbError> {
        let changes = changes.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::update(users::table.find(id))
                .set((changes, users::updated_at.eq(now)))
                .returning(User::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Deletes a user that owns no token. Its billing records stay (the
    /// ledger is history) with their `user_id`.
    pub async fn delete_user(&self, id: i64) -> Result<DeleteUser, DbError> {
        run_query!(self, |conn| {
            use diesel::dsl::{exists, not};
            // One statement, so a token created meanwhile cannot be orphaned
            // between a check and the delete.
            let deleted = diesel::delete(users::table.filter(users::id.eq(id)).filter(not(
                exists(gateway_tokens::table.filter(gateway_tokens::user_id.eq(id))),
            )))
            .execute(conn)
            .await?;
            if deleted > 0 {
                return Ok(DeleteUser::Deleted);
            }
            let found: Option<i64> = users::table
                .find(id)
                .select(users::id)
                .first(conn)
                .await
                .optional()?;
            if found.is_none() {
                return Ok(DeleteUser::NotFound);
            }
            let tokens: i64 = gateway_tokens::table
                .filter(gateway_tokens::user_id.eq(id))
                .count()
                .get_result(conn)
                .await?;
            Ok(DeleteUser::HasTokens(tokens))
        })
    }

    /// Adds `amount_nanos` to the user's balance and records the top-up,
    /// in one transaction. `None` when the user does not exist.
    pub async fn topup(
        &self,
        user_id: i64,
        amount_nanos: i64,
        note: Option<String>,
        at_ms: i64,
    ) -> Result<Option<(User, BillingRecord)>, DbError> {
        run_query!(self, |conn| {
            conn.transaction(async |conn| {
                // `updated_at` stays: it tells other instances that the
                // user's cached view changed (`crate::sync`), and the balance
                // is not cached (charges do not touch it either).
                let user: Option<User> = diesel::update(users::table.find(user_id))
                    .set(users::balance_nanos.eq(users::balance_nanos + amount_nanos))
                    .returning(User::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(user) = user else {
                    return Ok(None);
                };
                use billing_records::dsl as b;
                let record: BillingRecord = diesel::insert_into(b::billing_records)
                    .values((
                        b::created_at.eq(at_ms),
                        b::kind.eq(super::billing::KIND_TOPUP),
                        b::user_id.eq(user_id),
                        b::amount_nanos.eq(amount_nanos),
                        b::note.eq(note),
                    ))
                    .returning(BillingRecord::as_returning())
                    .get_result(conn)
                    .await?;
                Ok::<_, diesel::result::Error>(Some((user, record)))
            })
            .await
        })
    }

    /// The user with the ids of its tokens and what its requests were
    /// charged in all (the sum of its `request` billing records,
    /// nano-USD); `None` when there is no such user. One snapshot, so the
    /// balance and the spend add up: the usage writer charges both in one
    /// transaction, and read apart they could disagree by a batch.
    pub async fn user_shown(&self, user_id: i64) -> Result<Option<UserShown>, DbError> {
        use diesel::dsl::sql;
        use diesel::sql_types::BigInt;
        run_snapshot!(self, |conn| {
            let Some(user) = users::table
                .find(user_id)
                .select(User::as_select())
                .first(conn)
                .await
                .optional()?
            else {
                return Ok(None);
            };
            let token_ids: Vec<i64> = gateway_tokens::table
                .filter(gateway_tokens::user_id.eq(user_id))
                .order(gateway_tokens::id)
                .select(gateway_tokens::id)
                .load(conn)
                .await?;
            // SUM(bigint) is NUMERIC on PostgreSQL: cast, so one type reads both.
            let spent_nanos: i64 = billing_records::table
                .filter(billing_records::user_id.eq(user_id))
                .filter(billing_records::kind.eq(super::billing::KIND_REQUEST))
                .select(sql::<BigInt>(
                    "CAST(COALESCE(SUM(amount_nanos), 0) AS BIGINT)",
                ))
                .first(conn)
                .await?;
            Ok(Some(UserShown {
                user,
                token_ids,
                spent_nanos,
            }))
        })
    }
}
