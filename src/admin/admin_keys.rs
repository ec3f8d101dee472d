//! Admin keys: the Ed25519 public keys allowed to log in. Listing shows
//! fingerprints and public keys (never anything private). Disabling or
//! removing a key ends its sessions (removal deletes them; on this instance
//! at once, on others within `admin.session_cache_ttl`). The last enabled
//! key cannot be disabled or removed, so the deployment never locks out key
//! logins.
//!
//! Each key has a role (`crate::auth::role`): `admin` unless `role` says
//! otherwise at registration, changed with `PATCH /admin/admin-keys/{id}`.
//! A role change ends nothing but is seen at the key's next call on this
//! instance (its cached sessions are dropped), within
//! `admin.session_cache_ttl` on others. The last enabled `admin` key cannot
//! be demoted, disabled or removed, so some key can always manage the rest.

use super::ADMIN_BODY_LIMIT;
use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::auth::AdminPublicKey;
use crate::auth::role::{DEFAULT_ROLE, Role};
use crate::auth::session::ForgetKeySessions;
use crate::db::{AdminKey, DbError, NewAdminKey};
use crate::error::ApiError;
use crate::http::body::read_json;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

/// `POST /admin/admin-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAdminKey {
    /// A label (who holds the key).
    pub name: String,
    /// base64url of the 32-byte public key, or a PEM `PUBLIC KEY`.
    pub public_key: String,
    /// `admin` (the default, [`DEFAULT_ROLE`]), `operator` or `viewer`.
    pub role: Option<String>,
}

/// `PATCH /admin/admin-keys/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdminKey {
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// The role named by the `role` field, or a 400 naming it.
fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text.trim())
        .ok_or_else(|| ApiError::bad_param("role", "`role` must be admin, operator or viewer"))
}

/// The public view of an admin key.
pub fn admin_key_json(row: &AdminKey) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "fingerprint": row.fingerprint,
        "public_key": row.public_key,
        "enabled": row.enabled,
        "role": row.role().as_str(),
        "last_login_at": row.last_login_at.map(|ms| ms / 1000),
        "created_at": row.created_at / 1000,
    })
}

async fn admin_key_row(state: &AdminState, id: i64) -> Result<AdminKey, ApiError> {
    state
        .db
        .get_admin_key(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No admin key with id {id}")))
}

/// Refuses a change that would leave no enabled admin key, or no enabled
/// key with the `admin` role (none could manage admin keys any more).
async fn keep_one_enabled(state: &AdminState, row: &AdminKey, verb: &str) -> Result<(), ApiError> {
    // The reserved row master-key dashboard sessions hang on is no key
    // anyone signs in with: it never keeps an admin in, and disabling it
    // only ends those sessions.
    let reserved = |key: &AdminKey| key.public_key == super::login::MASTER_KEY_ROW;
    if !row.enabled || reserved(row) {
        return Ok(());
    }
    let keys = state.db.list_admin_keys().await?;
    let others = keys
        .iter()
        .filter(|key| key.enabled && key.id != row.id && !reserved(key));
    if others.clone().count() == 0 {
        return Err(ApiError::bad_request(format!(
            "Cannot {verb} the last enabled admin key; add or enable another one first"
        )));
    }
    if row.role() == Role::Admin && !others.clone().any(|key| key.role() == Role::Admin) {
        return Err(ApiError::bad_request(format!(
            "Cannot {verb} the last enabled key with the `admin` role; give another key that \
             role first"
        )));
    }
    Ok(())
}

/// `GET /admin/admin-keys`
pub async fn list(_: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let data: Vec<Value> = state
        .db
        .list_admin_keys()
        .await?
        .iter()
        .map(admin_key_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `POST /admin/admin-keys`
pub async fn create(
    admin: AdminAuth,
    state: Data<AdminState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: AddAdminKey = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_param(
            "name",
            "`name` must be 1 to 100 printable characters",
        ));
    }
    let key = AdminPublicKey::parse_text_or_pem(&body.public_key)
        .map_err(|error| ApiError::bad_param("public_key", error.to_string()))?;
    let role = body
        .role
        .as_deref()
        .map(parse_role)
        .transpose()?
        .unwrap_or(DEFAULT_ROLE);
    let row = match state
        .db
        .create_admin_key(&NewAdminKey {
            name: name.to_owned(),
            public_key: key.to_text(),
            fingerprint: key.fingerprint(),
            enabled: true,
            role: role.as_str().to_owned(),
        })
        .await
    {
        Ok(row) => row,
        Err(DbError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!(
                "The admin key {} is already registered",
                key.fingerprint()
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let view = admin_key_json(&row);
    slog::info!(state.log, "admin.admin_key_added"; "admin_key_id" => row.id,
        "fingerprint" => &row.fingerprint, "role" => role.as_str(), "by" => &admin.actor);
    record(
        &state,
        &admin,
        "admin_key.create",
        &format!("admin_key:{}", row.id),
        None,
        Some(view.clone()),
    )
    .await;
    Ok(HttpResponse::Created().json(view))
}

async fn set_enabled(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: i64,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let before = admin_key_row(&state, id).await?;
    if !enabled {
        keep_one_enabled(&state, &before, "disable").await?;
    }
    if !state.db.set_admin_key_enabled(id, enabled).await? {
        return Err(ApiError::NotFound(format!("No admin key with id {id}")));
    }
    if !enabled {
        state
            .sessions
            .send(ForgetKeySessions { admin_key_id: id })
            .await
            .map_err(|_| ApiError::Internal)?;
    }
    let after = admin_key_row(&state, id).await?;
    slog::info!(state.log, "admin.admin_key_updated"; "admin_key_id" => id,
        "enabled" => enabled, "by" => &admin.actor);
    let view = admin_key_json(&after);
    record(
        &state,
        &admin,
        if enabled {
            "admin_key.enable"
        } else {
            "admin_key.disable"
        },
        &format!("admin_key:{id}"),
        Some(admin_key_json(&before)),
        Some(view.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(view))
}

/// `PATCH /admin/admin-keys/{id}`: changes the key's role.
pub async fn update(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    let body: UpdateAdminKey = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let role = parse_role(&body.role)?;
    let before = admin_key_row(&state, id).await?;
    if role != Role::Admin && before.role() == Role::Admin {
        keep_one_enabled(&state, &before, "demote").await?;
    }
    if !state.db.set_admin_key_role(id, role).await? {
        return Err(ApiError::NotFound(format!("No admin key with id {id}")));
    }
    // Cached sessions carry the old role: read it again at their next call.
    state
        .sessions
        .send(ForgetKeySessions { admin_key_id: id })
        .await
        .map_err(|_| ApiError::Internal)?;
    let after = admin_key_row(&state, id).await?;
    slog::info!(state.log, "admin.admin_key_role_changed"; "admin_key_id" => id,
        "role" => role.as_str(), "by" => &admin.actor);
    let view = admin_key_json(&after);
    record(
        &state,
        &admin,
        "admin_key.update",
        &format!("admin_key:{id}"),
        Some(admin_key_json(&before)),
        Some(view.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /admin/admin-keys/{id}/disable`
pub async fn disable(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, false).await
}

/// `POST /admin/admin-keys/{id}/enable`
pub async fn enable(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, true).await
}

/// `DELETE /admin/admin-keys/{id}`: the key, its challenges and sessions.
pub async fn delete(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    let before = admin_key_row(&state, id).await?;
    keep_one_enabled(&state, &before, "remove").await?;
    if !state.db.delete_admin_key(id).await? {
        return Err(ApiError::NotFound(format!("No admin key with id {id}")));
    }
    state
        .sessions
        .send(ForgetKeySessions { admin_key_id: id })
        .await
        .map_err(|_| ApiError::Internal)?;
    slog::info!(state.log, "admin.admin_key_removed"; "admin_key_id" => id,
        "fingerprint" => &before.fingerprint, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "admin_key.delete",
        &format!("admin_key:{id}"),
        Some(admin_key_json(&before)),
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
