//! Upstream providers and their API keys (secrets encrypted at rest, see
//! [`crate::crypto::SecretCipher`]).

use super::schema::{provider_keys, providers};
use super::{Db, DbError};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// A configured upstream.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = providers)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    /// The adapter: `openai`, `anthropic`, `gemini`, ...
    pub kind: String,
    /// `None` for the kind's default endpoint.
    pub base_url: Option<String>,
    /// Kind-specific settings as a JSON object.
    pub config_json: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A provider to create, or to update by name.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = providers, treat_none_as_default_value = false)]
pub struct NewProvider {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub config_json: String,
    pub enabled: bool,
}

/// One API key of a provider.
#[derive(Queryable, Selectable, Debug, Clone, Serialize)]
#[diesel(table_name = provider_keys)]
pub struct ProviderKey {
    pub id: i64,
    pub provider_id: i64,
    /// Stable label shown to admins and written to logs.
    pub key_id: String,
    /// The encrypted secret; never serialized.
    #[serde(skip)]
    pub secret_ciphertext: String,
    /// Masked form for display, e.g. `sk-...f3a9`.
    pub secret_hint: String,
    /// Hex SHA-256 of the secret, to refuse the same secret twice.
    pub secret_fingerprint: String,
    pub weight: i32,
    pub priority: i32,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A provider key to create, or to update by `(provider_id, key_id)`.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = provider_keys, treat_none_as_default_value = false)]
pub struct NewProviderKey {
    pub provider_id: i64,
    pub key_id: String,
    pub secret_ciphertext: String,
    pub secret_hint: String,
    pub secret_fingerprint: String,
    pub weight: i32,
    pub priority: i32,
    /// Only used when the key is created; an update keeps the current state.
    pub enabled: bool,
}

impl Db {
    /// Creates the provider, or updates the one with the same name.
    pub async fn upsert_provider(&self, new: &NewProvider) -> Result<Provider, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use providers::dsl as p;
            diesel::insert_into(p::providers)
                .values((new, p::created_at.eq(now), p::updated_at.eq(now)))
                .on_conflict(p::name)
                .do_update()
                .set((
                    p::kind.eq(excluded(p::kind)),
                    p::base_url.eq(excluded(p::base_url)),
                    p::config_json.eq(excluded(p::config_json)),
                    p::enabled.eq(excluded(p::enabled)),
                    p::updated_at.eq(now),
                ))
                .returning(Provider::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// All providers, by name.
    pub async fn list_providers(&self) -> Result<Vec<Provider>, DbError> {
        run_query!(self, |conn| {
            providers::table
                .order(providers::name)
                .select(Provider::as_select())
                .load(conn)
                .await
        })
    }

    /// The provider with this name, if any.
    pub async fn get_provider_by_name(&self, name: &str) -> Result<Option<Provider>, DbError> {
        let name = name.to_owned();
        run_query!(self, |conn| {
            providers::table
                .filter(providers::name.eq(name))
                .select(Provider::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The keys of a provider, by priority (highest first), then key id.
    pub async fn list_provider_keys(&self, provider_id: i64) -> Result<Vec<ProviderKey>, DbError> {
        run_query!(self, |conn| {
            provider_keys::table
                .filter(provider_keys::provider_id.eq(provider_id))
                .order((provider_keys::priority.desc(), provider_keys::key_id))
                .select(ProviderKey::as_select())
                .load(conn)
                .await
        })
    }

    /// Creates the key, or updates the secret, weight and priority of the one
    /// with the same `(provider_id, key_id)`, keeping its enabled state and
    /// disabled reason. The same secret twice in one provider is a
    /// [`DbError::Conflict`].
    pub async fn upsert_provider_key(&self, new: &NewProviderKey) -> Result<ProviderKey, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use provider_keys::dsl as k;
            diesel::insert_into(k::provider_keys)
                .values((new, k::created_at.eq(now), k::updated_at.eq(now)))
                .on_conflict((k::provider_id, k::key_id))
                .do_update()
                .set((
                    k::secret_ciphertext.eq(excluded(k::secret_ciphertext)),
                    k::secret_hint.eq(excluded(k::secret_hint)),
                    k::secret_fingerprint.eq(excluded(k::secret_fingerprint)),
                    k::weight.eq(excluded(k::weight)),
                    k::priority.eq(excluded(k::priority)),
                    k::updated_at.eq(now),
                ))
                .returning(ProviderKey::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// Enables or disables a key; `reason` is kept only when disabling.
    /// Returns whether the key exists.
    pub async fn set_provider_key_enabled(
        &self,
        provider_id: i64,
        key_id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let key = key_id.to_owned();
        let reason = if enabled {
            None
        } else {
            reason.map(str::to_owned)
        };
        let now = self.now_ms();
        run_query!(self, |conn| {
            use provider_keys::dsl as k;
            diesel::update(
                k::provider_keys
                    .filter(k::provider_id.eq(provider_id))
                    .filter(k::key_id.eq(key)),
            )
            .set((
                k::enabled.eq(enabled),
                k::disabled_reason.eq(reason),
                k::updated_at.eq(now),
            ))
            .execute(conn)
            .await
            .map(|n| n > 0)
        })
    }

    /// Deletes a key; returns whether it existed.
    pub async fn delete_provider_key(
        &self,
        provider_id: i64,
        key_id: &str,
    ) -> Result<bool, DbError> {
        let key = key_id.to_owned();
        run_query!(self, |conn| {
            use provider_keys::dsl as k;
            diesel::delete(
                k::provider_keys
                    .filter(k::provider_id.eq(provider_id))
                    .filter(k::key_id.eq(key)),
            )
            .execute(conn)
            .await
            .map(|n| n > 0)
        })
    }

    /// Replaces a key's stored ciphertext and fingerprint if the ciphertext
    /// is still `old` (re-encryption at start; racing instances are
    /// harmless). Returns whether it did.
    pub async fn replace_provider_key_secret(
        &self,
        id: i64,
        old: &str,
        new: &str,
        fingerprint: &str,
    ) -> Result<bool, DbError> {
        let (old, new, fingerprint) = (old.to_owned(), new.to_owned(), fingerprint.to_owned());
        run_query!(self, |conn| {
            use provider_keys::dsl as k;
            diesel::update(
                k::provider_keys
                    .find(id)
                    .filter(k::secret_ciphertext.eq(old)),
            )
            .set((
                k::secret_ciphertext.eq(new),
                k::secret_fingerprint.eq(fingerprint),
            ))
            .execute(conn)
            .await
            .map(|n| n == 1)
        })
    }

    /// Replaces a provider's `config_json` if it is still `old`.
    pub async fn replace_provider_config(
        &self,
        id: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, DbError> {
        let (old, new) = (old.to_owned(), new.to_owned());
        run_query!(self, |conn| {
            use providers::dsl as p;
            diesel::update(p::providers.find(id).filter(p::config_json.eq(old)))
                .set(p::config_json.eq(new))
                .execute(conn)
                .await
                .map(|n| n == 1)
        })
    }
}

impl Db {
    /// Creates a provider and its keys in one transaction (each key's
    /// `provider_id` is set here). A provider of the same name, or the same
    /// secret twice, is a [`DbError::Conflict`] and stores nothing.
    pub async fn create_provider(
        &self,
        new: &NewProvider,
        keys: &[NewProviderKey],
    ) -> Result<Provider, DbError> {
        let (new, keys) = (new.clone(), keys.to_vec());
        let now = self.now_ms();
        run_query!(self, |conn| {
            use diesel_async::AsyncConnection;
            conn.transaction(async |conn| {
                let row = diesel::insert_into(providers::table)
                    .values((
                        new,
                        providers::created_at.eq(now),
                        providers::updated_at.eq(now),
                    ))
                    .returning(Provider::as_returning())
                    .get_result(conn)
                    .await?;
                for mut key in keys {
                    key.provider_id = row.id;
                    diesel::insert_into(provider_keys::table)
                        .values((
                            key,
                            provider_keys::created_at.eq(now),
                            provider_keys::updated_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .await
        })
    }

    /// Replaces the kind, base URL, config and enabled flag of provider
    /// `id` (its name stays); `None` when it no longer exists.
    pub async fn update_provider(
        &self,
        id: i64,
        new: &NewProvider,
    ) -> Result<Option<Provider>, DbError> {
        let new = new.clone();
        let now = self.now_ms();
        run_query!(self, |conn| {
            use providers::dsl as p;
            diesel::update(p::providers.find(id))
                .set((
                    p::kind.eq(new.kind),
                    p::base_url.eq(new.base_url),
                    p::config_json.eq(new.config_json),
                    p::enabled.eq(new.enabled),
                    p::updated_at.eq(now),
                ))
                .returning(Provider::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Deletes provider `id` and its keys in one transaction; returns
    /// whether it existed.
    pub async fn delete_provider(&self, id: i64) -> Result<bool, DbError> {
        run_query!(self, |conn| {
            use diesel_async::AsyncConnection;
            conn.transaction(async |conn| {
                // The foreign key cascades too; deleting the keys first does
                // not depend on SQLite's `foreign_keys` pragma.
                diesel::delete(provider_keys::table.filter(provider_keys::provider_id.eq(id)))
                    .execute(conn)
                    .await?;
                let deleted = diesel::delete(providers::table.find(id))
                    .execute(conn)
                    .await?;
                Ok::<_, diesel::result::Error>(deleted > 0)
            })
            .await
        })
    }
}
