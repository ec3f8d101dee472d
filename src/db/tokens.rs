//! Gateway tokens: what clients authenticate with. Only a hash of the token is
//! stored, plus a short prefix for display.

use super::schema::gateway_tokens;
use super::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// A gateway token with its limits and spend counters.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = gateway_tokens)]
pub struct GatewayToken {
    pub id: i64,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The token's first characters, for display.
    pub token_prefix: String,
    pub user_id: Option<i64>,
    /// JSON array of allowed model names; `None` allows every model.
    pub allowed_models: Option<String>,
    /// Spend limit in nano-USD.
    pub budget_nanos: Option<i64>,
    /// Spend limit in tokens (prompt + completion).
    pub budget_tokens: Option<i64>,
    /// Requests per minute.
    pub rpm: Option<i32>,
    /// Tokens per minute.
    pub tpm: Option<i32>,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    pub enabled: bool,
    pub spent_nanos: i64,
    pub spent_tokens: i64,
    pub request_count: i64,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Requests in flight at once.
    pub max_parallel: Option<i32>,
    /// JSON list of periodic quotas (`switchyard_actors::Quota`).
    pub quotas: Option<String>,
    /// Price multiplier in parts per million (1,000,000 = x1).
    pub price_multiplier_ppm: Option<i64>,
    /// Estimates held by requests in flight (nano-USD, tokens).
    pub reserved_nanos: i64,
    pub reserved_tokens: i64,
    /// The token this one replaced, still accepted until `previous_expires_at`.
    pub previous_token_hash: Option<String>,
    pub previous_expires_at: Option<i64>,
}

/// A token to create.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = gateway_tokens, treat_none_as_default_value = false)]
pub struct NewToken {
    pub name: String,
    pub token_hash: String,
    pub token_prefix: String,
    pub user_id: Option<i64>,
    pub allowed_models: Option<String>,
    pub budget_nanos: Option<i64>,
    pub budget_tokens: Option<i64>,
    pub rpm: Option<i32>,
    pub tpm: Option<i32>,
    pub expires_at: Option<i64>,
    pub enabled: bool,
    pub max_parallel: Option<i32>,
    pub quotas: Option<String>,
    pub price_multiplier_ppm: Option<i64>,
}

/// What `PATCH /admin/tokens/{id}` changes; `None` leaves a field alone and
/// `Some(None)` clears a nullable one (the limit is lifted).
#[derive(AsChangeset, Debug, Clone, Default)]
#[diesel(table_name = gateway_tokens)]
pub struct TokenChanges {
    pub name: Option<String>,
    pub user_id: Option<Option<i64>>,
    pub allowed_models: Option<Option<String>>,
    pub budget_nanos: Option<Option<i64>>,
    pub budget_tokens: Option<Option<i64>>,
    pub rpm: Option<Option<i32>>,
    pub tpm: Option<Option<i32>>,
    pub expires_at: Option<Option<i64>>,
    pub enabled: Option<bool>,
    pub max_parallel: Option<Option<i32>>,
    pub quotas: Option<Option<String>>,
    pub price_multiplier_ppm: Option<Option<i64>>,
}

impl Db {
    /// Creates a token; a hash that already exists is a [`DbError::Conflict`].
    pub async fn create_token(&self, new: &NewToken) -> Result<GatewayToken, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use gateway_tokens::dsl as t;
            diesel::insert_into(t::gateway_tokens)
                .values((new, t::created_at.eq(now), t::updated_at.eq(now)))
                .returning(GatewayToken::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// All tokens, by id.
    pub async fn list_tokens(&self) -> Result<Vec<GatewayToken>, DbError> {
        run_query!(self, |conn| {
            gateway_tokens::table
                .order(gateway_tokens::id)
                .select(GatewayToken::as_select())
                .load(conn)
                .await
        })
    }

    /// The token with this id, if any.
    pub async fn get_token(&self, id: i64) -> Result<Option<GatewayToken>, DbError> {
        run_query!(self, |conn| {
            gateway_tokens::table
                .find(id)
                .select(GatewayToken::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The token whose hash is `token_hash`, or that had it before a rotation
    /// (the caller checks the grace period), if any.
    pub async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<GatewayToken>, DbError> {
        let hash = token_hash.to_owned();
        run_query!(self, |conn| {
            gateway_tokens::table
                .filter(
                    gateway_tokens::token_hash
                        .eq(hash.clone())
                        .or(gateway_tokens::previous_token_hash.eq(hash)),
                )
                .select(GatewayToken::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Enables or disables a token; returns whether it exists.
    pub async fn set_token_enabled(&self, id: i64, enabled: bool) -> Result<bool, DbError> {
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::update(gateway_tokens::table.find(id))
                .set((
                    gateway_tokens::enabled.eq(enabled),
                    gateway_tokens::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }

    /// Deletes a token; returns whether it existed. Its request logs stay.
    pub async fn delete_token(&self, id: i64) -> Result<bool, DbError> {
        run_query!(self, |conn| {
            diesel::delete(gateway_tokens::table.find(id))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }

    /// Applies `changes`; `None` when the token does not exist.
    pub async fn update_token(
        &self,
        id: i64,
        changes: &TokenChanges,
    ) -> Result<Option<GatewayToken>, DbError> {
        let changes = changes.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::update(gateway_tokens::table.find(id))
                .set((changes, gateway_tokens::updated_at.eq(now)))
                .returning(GatewayToken::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Gives token `id` a new hash and prefix; the current hash stays
    /// accepted until `grace_until_ms` (a hash from an earlier rotation is
    /// forgotten). `None` when the token does not exist.
    pub async fn rotate_token(
        &self,
        id: i64,
        new_hash: &str,
        new_prefix: &str,
        grace_until_ms: i64,
    ) -> Result<Option<GatewayToken>, DbError> {
        let (hash, prefix) = (new_hash.to_owned(), new_prefix.to_owned());
        let now = self.now_ms();
        run_query!(self, |conn| {
            use gateway_tokens::dsl as t;
            // The right-hand side reads the row as it was before the UPDATE
            // (on both backends), so the old hash moves over.
            diesel::update(t::gateway_tokens.find(id))
                .set((
                    t::previous_token_hash.eq(t::token_hash.nullable()),
                    t::previous_expires_at.eq(Some(grace_until_ms)),
                    t::token_hash.eq(hash),
                    t::token_prefix.eq(prefix),
                    t::updated_at.eq(now),
                ))
                .returning(GatewayToken::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }
}
