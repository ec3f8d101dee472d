//! Admin keys (Ed25519 public keys), login challenges and sessions. Only a
//! hash of a session token is stored; challenges are single use, consumed
//! with a conditional update so that a replay fails even when two instances
//! race on the same nonce.

use super::schema::{admin_challenges, admin_keys, admin_sessions};
use super::{Db, DbError};
use crate::auth::Role;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

/// How long used or expired challenges, and expired or revoked sessions, are
/// kept before a login purges them (so `GET /admin/sessions` still shows
/// recent ones).
const PURGE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

/// A registered admin public key.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = admin_keys)]
pub struct AdminKey {
    pub id: i64,
    pub name: String,
    /// base64url (no padding) of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// `SHA256:` and base64 (no padding) of SHA-256 of the public key.
    pub fingerprint: String,
    pub enabled: bool,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// `admin`, `operator` or `viewer` (a CHECK constraint keeps it so).
    pub role: String,
}

impl AdminKey {
    /// The key's role; a value the constraint would not allow reads as the
    /// least role, so a damaged row never grants more.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }
}

/// An admin key to register.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = admin_keys)]
pub struct NewAdminKey {
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub enabled: bool,
    /// [`Role::as_str`].
    pub role: String,
}

/// A login challenge.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = admin_challenges)]
pub struct AdminChallenge {
    pub id: i64,
    /// base64url (no padding) of 32 random bytes.
    pub nonce: String,
    pub admin_key_id: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub created_at: i64,
}

/// An admin session (the token itself is never stored).
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = admin_sessions)]
pub struct AdminSession {
    pub id: i64,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The token's first characters, for display.
    pub token_prefix: String,
    pub admin_key_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A session to create when a challenge is answered.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = admin_sessions)]
pub struct NewAdminSession {
    pub token_hash: String,
    pub token_prefix: String,
    pub admin_key_id: i64,
    pub expires_at: i64,
}

impl Db {
    /// Registers a key; the same public key twice is a [`DbError::Conflict`].
    pub async fn create_admin_key(&self, new: &NewAdminKey) -> Result<AdminKey, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use admin_keys::dsl as k;
            diesel::insert_into(k::admin_keys)
                .values((new, k::created_at.eq(now), k::updated_at.eq(now)))
                .returning(AdminKey::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// All admin keys, by id.
    pub async fn list_admin_keys(&self) -> Result<Vec<AdminKey>, DbError> {
        run_query!(self, |conn| {
            admin_keys::table
                .order(admin_keys::id)
                .select(AdminKey::as_select())
                .load(conn)
                .await
        })
    }

    /// The admin key with this id, if any.
    pub async fn get_admin_key(&self, id: i64) -> Result<Option<AdminKey>, DbError> {
        run_query!(self, |conn| {
            admin_keys::table
                .find(id)
                .select(AdminKey::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The admin key with this public key (base64url), if any.
    pub async fn find_admin_key(&self, public_key: &str) -> Result<Option<AdminKey>, DbError> {
        let public_key = public_key.to_owned();
        run_query!(self, |conn| {
            admin_keys::table
                .filter(admin_keys::public_key.eq(public_key))
                .select(AdminKey::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Enables or disables a key; returns whether it exists.
    pub async fn set_admin_key_enabled(&self, id: i64, enabled: bool) -> Result<bool, DbError> {
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::update(admin_keys::table.find(id))
                .set((
                    admin_keys::enabled.eq(enabled),
                    admin_keys::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }

    /// Changes a key's role; returns whether it exists.
    pub async fn set_admin_key_role(&self, id: i64, role: Role) -> Result<bool, DbError> {
        let now = self.now_ms();
        run_query!(self, |conn| {
            diesel::update(admin_keys::table.find(id))
                .set((
                    admin_keys::role.eq(role.as_str()),
                    admin_keys::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }

    /// Deletes a key with its challenges and sessions; returns whether it existed.
    pub async fn delete_admin_key(&self, id: i64) -> Result<bool, DbError> {
        run_query!(self, |conn| {
            diesel::delete(admin_keys::table.find(id))
                .execute(conn)
                .await
                .map(|n| n > 0)
        })
    }

    /// Issues a challenge for `admin_key_id`, first purging challenges that
    /// expired long ago. Returns the stored challenge.
    pub async fn create_admin_challenge(
        &self,
        admin_key_id: i64,
        nonce: &str,
        expires_at: i64,
    ) -> Result<AdminChallenge, DbError> {
        let nonce = nonce.to_owned();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use admin_challenges::dsl as c;
            diesel::delete(c::admin_challenges.filter(c::expires_at.lt(now - PURGE_AFTER_MS)))
                .execute(conn)
                .await?;
            diesel::insert_into(c::admin_challenges)
                .values((
                    c::nonce.eq(nonce),
                    c::admin_key_id.eq(admin_key_id),
                    c::expires_at.eq(expires_at),
                    c::created_at.eq(now),
                ))
                .returning(AdminChallenge::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// Challenges of a key that are neither used nor expired at `now`.
    pub async fn count_open_admin_challenges(
        &self,
        admin_key_id: i64,
        now: i64,
    ) -> Result<i64, DbError> {
        run_query!(self, |conn| {
            use admin_challenges::dsl as c;
            c::admin_challenges
                .filter(c::admin_key_id.eq(admin_key_id))
                .filter(c::used_at.is_null())
                .filter(c::expires_at.gt(now))
                .count()
                .get_result(conn)
                .await
        })
    }

    /// The challenge with this nonce, if any.
    pub async fn find_admin_challenge(
        &self,
        nonce: &str,
    ) -> Result<Option<AdminChallenge>, DbError> {
        let nonce = nonce.to_owned();
        run_query!(self, |conn| {
            admin_challenges::table
                .filter(admin_challenges::nonce.eq(nonce))
                .select(AdminChallenge::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// In one transaction: marks the challenge used, if it still belongs to
    /// `admin_key_id`, is unused and unexpired at `now`, and creates the
    /// session. `None` when the challenge could not be consumed (a replay,
    /// possibly racing on another instance, or it expired meanwhile).
    pub async fn consume_admin_challenge(
        &self,
        nonce: &str,
        now: i64,
        session: &NewAdminSession,
    ) -> Result<Option<AdminSession>, DbError> {
        let nonce = nonce.to_owned();
        let session = session.clone();
        run_query!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                use admin_challenges::dsl as c;
                let consumed = diesel::update(
                    c::admin_challenges
                        .filter(c::nonce.eq(nonce))
                        .filter(c::admin_key_id.eq(session.admin_key_id))
                        .filter(c::used_at.is_null())
                        .filter(c::expires_at.gt(now)),
                )
                .set(c::used_at.eq(now))
                .execute(conn)
                .await?;
                if consumed != 1 {
                    return Ok(None);
                }
                diesel::delete(
                    admin_sessions::table
                        .filter(admin_sessions::expires_at.lt(now - PURGE_AFTER_MS)),
                )
                .execute(conn)
                .await?;
                diesel::update(admin_keys::table.find(session.admin_key_id))
                    .set(admin_keys::last_login_at.eq(now))
                    .execute(conn)
                    .await?;
                diesel::insert_into(admin_sessions::table)
                    .values((session, admin_sessions::created_at.eq(now)))
                    .returning(AdminSession::as_returning())
                    .get_result(conn)
                    .await
                    .map(Some)
            })
            .await
        })
    }

    /// Creates a session without a challenge: the dashboard's master-key
    /// login (`admin::login::master`), whose credential was checked by the
    /// caller. Purges old sessions like a challenge login does.
    pub async fn create_admin_session(
        &self,
        session: &NewAdminSession,
    ) -> Result<AdminSession, DbError> {
        let session = session.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                diesel::delete(
                    admin_sessions::table
                        .filter(admin_sessions::expires_at.lt(now - PURGE_AFTER_MS)),
                )
                .execute(conn)
                .await?;
                diesel::update(admin_keys::table.find(session.admin_key_id))
                    .set(admin_keys::last_login_at.eq(now))
                    .execute(conn)
                    .await?;
                diesel::insert_into(admin_sessions::table)
                    .values((session, admin_sessions::created_at.eq(now)))
                    .returning(AdminSession::as_returning())
                    .get_result(conn)
                    .await
            })
            .await
        })
    }

    /// The session whose token hashes to `token_hash`, with its key.
    pub async fn find_admin_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(AdminSession, AdminKey)>, DbError> {
        let hash = token_hash.to_owned();
        run_query!(self, |conn| {
            admin_sessions::table
                .inner_join(admin_keys::table)
                .filter(admin_sessions::token_hash.eq(hash))
                .select((AdminSession::as_select(), AdminKey::as_select()))
                .first(conn)
                .await
                .optional()
        })
    }

    /// The session with this id, with its key.
    pub async fn get_admin_session(
        &self,
        id: i64,
    ) -> Result<Option<(AdminSession, AdminKey)>, DbError> {
        run_query!(self, |conn| {
            admin_sessions::table
                .inner_join(admin_keys::table)
                .filter(admin_sessions::id.eq(id))
                .select((AdminSession::as_select(), AdminKey::as_select()))
                .first(conn)
                .await
                .optional()
        })
    }

    /// Every stored session with its key, newest first.
    pub async fn list_admin_sessions(&self) -> Result<Vec<(AdminSession, AdminKey)>, DbError> {
        run_query!(self, |conn| {
            admin_sessions::table
                .inner_join(admin_keys::table)
                .order(admin_sessions::id.desc())
                .select((AdminSession::as_select(), AdminKey::as_select()))
                .load(conn)
                .await
        })
    }

    /// Revokes a session (kept, marked revoked); returns whether it exists.
    /// Revoking twice keeps the first time.
    pub async fn revoke_admin_session(&self, id: i64) -> Result<bool, DbError> {
        let now = self.now_ms();
        run_query!(self, |conn| {
            let exists = admin_sessions::table
                .find(id)
                .select(admin_sessions::id)
                .first::<i64>(conn)
                .await
                .optional()?
                .is_some();
            diesel::update(
                admin_sessions::table
                    .find(id)
                    .filter(admin_sessions::revoked_at.is_null()),
            )
            .set(admin_sessions::revoked_at.eq(now))
            .execute(conn)
            .await?;
            Ok(exists)
        })
    }
}
