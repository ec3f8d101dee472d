//! Providers and their key pools: list, per-key health, and key changes that
//! take effect in the running provider actor without a restart.
//!
//! The database is the source of truth for which keys exist (and whether an
//! admin or an upstream 401/403 disabled them); the provider actor owns the
//! live health (cooldowns, circuit, in-flight counts). The health route merges
//! the two by key id. A key change writes the database first, then tells the
//! actor: adding or deleting a key reloads the provider's keys from the
//! database and sends `ReplaceKeys` (keys that stay keep their health);
//! enabling or disabling sends `SetKeyEnabled`.
//!
//! Secrets are never returned or logged: answers carry the stored masked hint.

use super::ADMIN_BODY_LIMIT;
use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::config::mask;
use crate::config_store;
use crate::crypto::{SecretRow, fingerprint_digits};
use crate::db::providers::{NewProviderKey, Provider, ProviderKey};
use crate::error::ApiError;
use crate::http::body::{read_body, read_json};
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use switchyard_actors::KeyHealthView;

/// `POST /admin/providers/{name}/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// The upstream API key itself.
    pub key: String,
    /// Stable label; defaults to `key-` and 8 hex digits of the secret's hash.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: i64,
    /// Lower is preferred by `first-available`.
    #[serde(default)]
    pub priority: i32,
}

fn default_weight() -> i64 {
    1
}

/// Optional body of `.../enable` and `.../disable`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStateChange {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The reason stored when an admin disables a key without giving one.
const DEFAULT_DISABLE_REASON: &str = "disabled by an admin";

fn provider_models(row: &Provider) -> Value {
    serde_json::from_str::<Value>(&row.config_json)
        .ok()
        .and_then(|config| config.get("models").cloned())
        .unwrap_or_else(|| json!([]))
}

pub(super) async fn provider_row(state: &AdminState, name: &str) -> Result<Provider, ApiError> {
    state
        .db
        .get_provider_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No provider named `{name}`")))
}

/// A routed provider's live key health by key id; `None` when it is not
/// routed (disabled in the database, or added after start).
pub(super) fn live_health(
    state: &AdminState,
    name: &str,
) -> Option<HashMap<String, KeyHealthView>> {
    state.router.health(name).map(|views| {
        views
            .into_iter()
            .map(|view| (view.id.clone(), view))
            .collect()
    })
}

/// The public view of a key row: the masked hint, never the secret.
pub(super) fn key_json(row: &ProviderKey, health: Option<&KeyHealthView>) -> Value {
    let mut value = json!({
        "id": row.key_id,
        "secret_hint": row.secret_hint,
        "weight": row.weight,
        "priority": row.priority,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "created_at": row.created_at / 1000,
        "updated_at": row.updated_at / 1000,
    });
    if let Some(object) = value.as_object_mut() {
        let live = match health {
            Some(health) => json!({
                // The actor learns of a change first (an upstream 401/403 is
                // written to the database by a spawned task), so its state
                // and reason win while the two differ.
                "state": health.state,
                "enabled": health.enabled,
                "disabled_reason": health.disabled_reason,
                "cooldown_remaining_ms": health.cooldown_remaining_ms,
                "in_flight": health.in_flight,
                "latency_ewma_ms": health.latency_ewma_ms,
                "error_streak": health.error_streak,
                "successes": health.successes,
                "failures": health.failures,
            }),
            None => json!({
                "state": if row.enabled { "not_running" } else { "disabled" },
                "cooldown_remaining_ms": 0,
                "in_flight": 0,
                "latency_ewma_ms": 0.0,
                "error_streak": 0,
                "successes": 0,
                "failures": 0,
            }),
        };
        if let Some(live) = live.as_object() {
            object.extend(live.clone());
        }
    }
    value
}

/// What the operation log keeps of a key: its settings and masked hint.
fn key_log_json(provider: &str, row: &ProviderKey) -> Value {
    json!({
        "provider": provider,
        "id": row.key_id,
        "secret_hint": row.secret_hint,
        "weight": row.weight,
        "priority": row.priority,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
    })
}

fn key_target(provider: &str, key_id: &str) -> String {
    format!("provider_key:{provider}/{key_id}")
}

/// `GET /admin/providers`
pub async fn list(_: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let mut data = Vec::new();
    for row in state.db.list_providers().await? {
        let keys = state.db.list_provider_keys(row.id).await?;
        let running = state.router.routes_provider(&row.name);
        data.push(json!({
            "name": row.name,
            "kind": row.kind,
            "base_url": row.base_url,
            "models": provider_models(&row),
            "keys": keys.len(),
            "enabled_keys": keys.iter().filter(|key| key.enabled).count(),
            "enabled": row.enabled,
            "running": running,
        }));
    }
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `GET /admin/providers/{name}/health`
pub async fn health(
    _: AdminAuth,
    state: Data<AdminState>,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = provider_row(&state, &name).await?;
    let keys = state.db.list_provider_keys(row.id).await?;
    let health = live_health(&state, &row.name);
    let running = health.is_some();
    let live = health.unwrap_or_default();
    let data: Vec<Value> = keys
        .iter()
        .map(|key| key_json(key, live.get(&key.key_id)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "provider": row.name,
        "enabled": row.enabled,
        "running": running,
        "keys": data,
    })))
}

/// Reloads a provider's keys from the database into its running actor.
async fn reload_keys(state: &AdminState, name: &str) -> Result<(), ApiError> {
    if !state.router.routes_provider(name) {
        return Ok(());
    }
    let loaded = config_store::load_provider_by_name(&state.db, name, &state.cipher, &state.log)
        .await
        .map_err(|error| {
            slog::error!(state.log, "admin.provider_reload_failed"; "provider" => name, "error" => %error);
            ApiError::Internal
        })?
        .ok_or_else(|| ApiError::NotFound(format!("No provider named `{name}`")))?;
    let count = loaded.keys.len();
    // Through the router, so that the table it routes from and any actor it
    // restarts see the same keys.
    state.router.replace_keys(name, loaded.keys);
    slog::info!(state.log, "admin.provider_keys_reloaded"; "provider" => name, "keys" => count);
    Ok(())
}

pub(super) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `POST /admin/providers/{name}/keys`
pub async fn add_key(
    admin: AdminAuth,
    state: Data<AdminState>,
    name: Path<String>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: AddKey = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let secret = body.key.trim();
    if secret.is_empty() || secret.len() > 4096 || secret.chars().any(char::is_control) {
        return Err(ApiError::bad_param(
            "key",
            "`key` must be 1 to 4096 printable characters",
        ));
    }
    let weight = i32::try_from(body.weight)
        .ok()
        .filter(|weight| *weight >= 1)
        .ok_or_else(|| ApiError::bad_param("weight", "`weight` must be a positive integer"))?;
    // Keyed, because a default id shows part of it (crate::crypto).
    let secret_fingerprint = state.cipher.fingerprint(secret);
    let key_id = match body.id.as_deref().map(str::trim) {
        Some(id) if !valid_key_id(id) => {
            return Err(ApiError::bad_param(
                "id",
                "`id` must be 1 to 100 letters, digits, '-', '_', '.' or ':'",
            ));
        }
        Some(id) => id.to_owned(),
        None => format!(
            "key-{}",
            fingerprint_digits(&secret_fingerprint)
                .get(..8)
                .unwrap_or("0")
        ),
    };
    let row = provider_row(&state, &name).await?;
    let existing = state.db.list_provider_keys(row.id).await?;
    if existing.iter().any(|key| key.key_id == key_id) {
        return Err(ApiError::Conflict(format!(
            "Provider `{}` already has a key with id `{key_id}`",
            row.name
        )));
    }
    if existing
        .iter()
        .any(|key| key.secret_fingerprint == secret_fingerprint)
    {
        return Err(ApiError::Conflict(format!(
            "Provider `{}` already has this key",
            row.name
        )));
    }
    let bound_to = SecretRow::ProviderKey {
        provider: &row.name,
        key_id: &key_id,
    };
    let ciphertext = state.cipher.encrypt_for(bound_to, secret).map_err(|error| {
        slog::error!(state.log, "admin.key_encrypt_failed"; "provider" => &row.name, "error" => %error);
        ApiError::Internal
    })?;
    // A concurrent add of the same id or secret loses here: the unique
    // constraints make it a conflict (400), never a silent overwrite of the
    // secret, because the id was checked free just above and the upsert only
    // updates an existing id.
    let stored = state
        .db
        .upsert_provider_key(&NewProviderKey {
            provider_id: row.id,
            key_id: key_id.clone(),
            secret_ciphertext: ciphertext,
            secret_hint: mask(secret),
            secret_fingerprint,
            weight,
            priority: body.priority,
            enabled: true,
        })
        .await?;
    slog::info!(state.log, "admin.provider_key_added"; "provider" => &row.name,
        "key_id" => &key_id, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "provider_key.create",
        &key_target(&row.name, &key_id),
        None,
        Some(key_log_json(&row.name, &stored)),
    )
    .await;
    reload_keys(&state, &row.name).await?;
    Ok(HttpResponse::Created().json(key_json(&stored, None)))
}

async fn set_key_enabled(
    admin: AdminAuth,
    state: Data<AdminState>,
    path: Path<(String, String)>,
    request: HttpRequest,
    payload: Payload,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let (name, key_id) = path.into_inner();
    let raw = read_body(&request, payload, ADMIN_BODY_LIMIT).await?;
    let change: KeyStateChange = if raw.iter().all(u8::is_ascii_whitespace) {
        KeyStateChange::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|error| ApiError::bad_request(format!("Invalid JSON body: {error}")))?
    };
    let reason = if enabled {
        None
    } else {
        Some(
            change
                .reason
                .map(|reason| reason.trim().to_owned())
                .filter(|reason| !reason.is_empty())
                .unwrap_or_else(|| DEFAULT_DISABLE_REASON.to_owned()),
        )
    };
    if reason.as_ref().is_some_and(|reason| reason.len() > 500) {
        return Err(ApiError::bad_param(
            "reason",
            "`reason` must be at most 500 characters",
        ));
    }
    let row = provider_row(&state, &name).await?;
    let before = state
        .db
        .list_provider_keys(row.id)
        .await?
        .into_iter()
        .find(|key| key.key_id == key_id);
    if !state
        .db
        .set_provider_key_enabled(row.id, &key_id, enabled, reason.as_deref())
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "Provider `{}` has no key with id `{key_id}`",
            row.name
        )));
    }
    let mut health = None;
    if let Some(known) = state
        .router
        .set_key_enabled(&row.name, &key_id, enabled, reason.clone())
    {
        if !known {
            // Stored but unknown to the pool (a restart is reloading it):
            // bring the pool in line with the database.
            reload_keys(&state, &row.name).await?;
        }
        health = live_health(&state, &row.name).and_then(|mut live| live.remove(&key_id));
    }
    slog::info!(state.log, "admin.provider_key_updated"; "provider" => &row.name,
        "key_id" => &key_id, "enabled" => enabled, "by" => &admin.actor);
    let stored = state
        .db
        .list_provider_keys(row.id)
        .await?
        .into_iter()
        .find(|key| key.key_id == key_id)
        .ok_or_else(|| ApiError::NotFound(format!("No key with id `{key_id}`")))?;
    record(
        &state,
        &admin,
        if enabled {
            "provider_key.enable"
        } else {
            "provider_key.disable"
        },
        &key_target(&row.name, &key_id),
        before.map(|before| key_log_json(&row.name, &before)),
        Some(key_log_json(&row.name, &stored)),
    )
    .await;
    Ok(HttpResponse::Ok().json(key_json(&stored, health.as_ref())))
}

/// `POST /admin/providers/{name}/keys/{id}/enable`
pub async fn enable_key(
    admin: AdminAuth,
    state: Data<AdminState>,
    path: Path<(String, String)>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    set_key_enabled(admin, state, path, request, payload, true).await
}

/// `POST /admin/providers/{name}/keys/{id}/disable`
pub async fn disable_key(
    admin: AdminAuth,
    state: Data<AdminState>,
    path: Path<(String, String)>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    set_key_enabled(admin, state, path, request, payload, false).await
}

/// `DELETE /admin/providers/{name}/keys/{id}`
pub async fn delete_key(
    admin: AdminAuth,
    state: Data<AdminState>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, key_id) = path.into_inner();
    let row = provider_row(&state, &name).await?;
    let before = state
        .db
        .list_provider_keys(row.id)
        .await?
        .into_iter()
        .find(|key| key.key_id == key_id);
    if !state.db.delete_provider_key(row.id, &key_id).await? {
        return Err(ApiError::NotFound(format!(
            "Provider `{}` has no key with id `{key_id}`",
            row.name
        )));
    }
    slog::info!(state.log, "admin.provider_key_deleted"; "provider" => &row.name,
        "key_id" => &key_id, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "provider_key.delete",
        &key_target(&row.name, &key_id),
        before.map(|before| key_log_json(&row.name, &before)),
        None,
    )
    .await;
    reload_keys(&state, &row.name).await?;
    Ok(HttpResponse::NoContent().finish())
}
