//! What changed since a moment: the change feed other instances poll to
//! keep their caches coherent (`crate::sync`), and the PostgreSQL change
//! feed they listen to (`crate::change_feed`).

use super::schema::{change_feed, gateway_tokens, model_prices, users};
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

/// One row of the change feed (PostgreSQL; `crate::change_feed`): what
/// changed (`kind`: `provider`, `redirect`, `price`, `token`, `user`,
/// `admin_key`, `admin_session`, `key_rest`) and which one (`subject`: a
/// name or an id as text). The database's triggers write every kind but
/// `key_rest`, which [`Db::record_key_rest`] writes.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = change_feed)]
pub struct Change {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub detail: Option<String>,
    /// Unix ms, the database's clock.
    pub at: i64,
    /// The instance that wrote it ([`Db::instance`]), if one did.
    pub origin: Option<String>,
}

/// PostgreSQL's wall clock in Unix ms, as the feed's triggers write it.
const DATABASE_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

impl Db {
    /// Feed rows written after `since_ms` (the database's clock), oldest first.
    pub async fn changes_since(&self, since_ms: i64) -> Result<Vec<Change>, DbError> {
        run_query!(self, |conn| {
            change_feed::table
                .filter(change_feed::at.gt(since_ms))
                .order(change_feed::id)
                .select(Change::as_select())
                .load(conn)
                .await
        })
    }

    /// The time of the newest feed row, if any.
    pub async fn latest_change_at(&self) -> Result<Option<i64>, DbError> {
        use diesel::dsl::max;
        run_query!(self, |conn| {
            change_feed::table
                .select(max(change_feed::at))
                .first(conn)
                .await
        })
    }

    /// Shares that `key_id` of `provider` rests for `rest_ms` from now (the
    /// upstream answered 429 with a `Retry-After`). The row's time is the
    /// database's, so readers measure the rest on the same clock
    /// ([`Db::feed_now_ms`]) whatever their own clocks say. PostgreSQL only
    /// (nothing reads the feed on SQLite): a no-op there.
    pub async fn record_key_rest(
        &self,
        provider: &str,
        key_id: &str,
        rest_ms: i64,
    ) -> Result<(), DbError> {
        if self.backend() == crate::config::Backend::Sqlite {
            return Ok(());
        }
        let detail = serde_json::json!({ "key_id": key_id, "rest_ms": rest_ms }).to_string();
        let provider = provider.to_owned();
        let origin = self.instance().to_owned();
        run_query!(self, |conn| {
            diesel::insert_into(change_feed::table)
                .values((
                    change_feed::kind.eq("key_rest"),
                    change_feed::subject.eq(provider),
                    change_feed::detail.eq(detail),
                    change_feed::at.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                        DATABASE_NOW_MS,
                    )),
                    change_feed::origin.eq(origin),
                ))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// The database's clock now, in Unix ms (PostgreSQL only: the clock the
    /// feed's rows are written with).
    pub async fn feed_now_ms(&self) -> Result<i64, DbError> {
        run_query!(self, |conn| {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                DATABASE_NOW_MS,
            ))
            .get_result(conn)
            .await
        })
    }

    /// Deletes feed rows older than `before_ms`; returns how many.
    pub async fn prune_changes(&self, before_ms: i64) -> Result<usize, DbError> {
        run_query!(self, |conn| {
            diesel::delete(change_feed::table.filter(change_feed::at.lt(before_ms)))
                .execute(conn)
                .await
        })
    }
}
