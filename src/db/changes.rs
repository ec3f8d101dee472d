//! What changed since a moment: the change feed other instances poll to
//! keep their caches coherent (`crate::sync`).

use super::schema::{gateway_tokens, model_prices, users};
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

impl Db {
    /// Ids and update times of tokens changed after `since_ms`.
    pub async fn tokens_changed_since(&self, since_ms: i64) -> Result<Vec<(i64, i64)>, DbError> {
        run_query!(self, |conn| {
            gateway_tokens::table
                .filter(gateway_tokens::updated_at.gt(since_ms))
                .select((gateway_tokens::id, gateway_tokens::updated_at))
                .load(conn)
                .await
        })
    }

    /// Ids and update times of users changed after `since_ms`.
    pub async fn users_changed_since(&self, since_ms: i64) -> Result<Vec<(i64, i64)>, DbError> {
        run_query!(self, |conn| {
            users::table
                .filter(users::updated_at.gt(since_ms))
                .select((users::id, users::updated_at))
                .load(conn)
                .await
        })
    }

    /// A fingerprint of the price table: how many prices and the latest
    /// update time. Any upsert moves the time, any delete the count.
    pub async fn prices_fingerprint(&self) -> Result<(i64, i64), DbError> {
        use diesel::dsl::{count_star, max};
        let (count, latest): (i64, Option<i64>) = run_query!(self, |conn| {
            model_prices::table
                .select((count_star(), max(model_prices::updated_at)))
                .first(conn)
                .await
        })?;
        Ok((count, latest.unwrap_or(0)))
    }
}
