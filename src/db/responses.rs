//! Response owners: which provider and key made a stored Responses API id,
//! for which gateway token. `GET`/`DELETE /v1/responses/{id}` and
//! `previous_response_id` are sent back to that provider (an OpenAI id is
//! only known to the project that made it), and only for the token that
//! made it. In the database rather than in memory so that every instance
//! sharing it, and a restarted one, finds the owner.

use super::schema::response_owners;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// How long an owner is remembered: OpenAI keeps stored responses 30 days.
pub const RESPONSE_OWNER_TTL_MS: i64 = 30 * 24 * 3_600_000;

/// Who made a stored response.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = response_owners)]
pub struct ResponseOwner {
    pub response_id: String,
    pub provider: String,
    pub key_id: String,
    pub token_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Db {
    /// Remembers who made `response_id` (a repeated id keeps its first
    /// owner), and deletes the owners that expired.
    pub async fn record_response_owner(
        &self,
        response_id: &str,
        provider: &str,
        key_id: &str,
        token_id: i64,
    ) -> Result<(), DbError> {
        let (response_id, provider, key_id) = (
            response_id.to_owned(),
            provider.to_owned(),
            key_id.to_owned(),
        );
        let now = self.now_ms();
        run_query!(self, |conn| {
            use response_owners::dsl as o;
            diesel::insert_into(o::response_owners)
                .values((
                    o::response_id.eq(response_id),
                    o::provider.eq(provider),
                    o::key_id.eq(key_id),
                    o::token_id.eq(token_id),
                    o::created_at.eq(now),
                    o::expires_at.eq(now + RESPONSE_OWNER_TTL_MS),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            // Owners expire as fast as they were made 30 days before, so
            // each insert deletes about one row.
            diesel::delete(o::response_owners.filter(o::expires_at.lt(now)))
                .execute(conn)
                .await
                .map(|_| ())
        })
    }

    /// The owner of `response_id` if `token_id` made it and it has not
    /// expired (another token's id reads as unknown).
    pub async fn response_owner(
        &self,
        response_id: &str,
        token_id: i64,
    ) -> Result<Option<ResponseOwner>, DbError> {
        let response_id = response_id.to_owned();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use response_owners::dsl as o;
            o::response_owners
                .filter(o::response_id.eq(response_id))
                .filter(o::token_id.eq(token_id))
                .filter(o::expires_at.ge(now))
                .select(ResponseOwner::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Forgets `response_id` (after the upstream deleted it).
    pub async fn delete_response_owner(&self, response_id: &str) -> Result<bool, DbError> {
        let response_id = response_id.to_owned();
        run_query!(self, |conn| {
            use response_owners::dsl as o;
            diesel::delete(o::response_owners.filter(o::response_id.eq(response_id)))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }
}
