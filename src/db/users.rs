//! Users: the owners of gateway tokens, with a balance.

use super::schema::users;
use super::{Db, DbError, now_ms};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
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

impl Db {
    /// Creates an active user with a zero balance; a taken name is a
    /// [`DbError::Conflict`].
    pub async fn create_user(&self, name: &str) -> Result<User, DbError> {
        let name = name.to_owned();
        run_query!(self, |conn| {
            let now = now_ms();
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
