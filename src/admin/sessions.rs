//! Admin sessions: list (never the token: its first characters only) and
//! revoke. A revoked session is kept, marked, until purged a week after it
//! expires.

use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::auth::Role;
use crate::auth::session::RevokeSession;
use crate::db::{AdminKey, AdminSession};
use crate::error::ApiError;
use actix_web::HttpResponse;
use actix_web::web::{Data, Path};
use serde_json::{Value, json};

/// The public view of a session.
/// `now_ms` decides whether it shows as expired.
pub fn session_json(
    session: &AdminSession,
    key: &AdminKey,
    caller: Option<i64>,
    now_ms: i64,
) -> Value {
    let state = if session.revoked_at.is_some() {
        "revoked"
    } else if session.expires_at <= now_ms {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": session.id,
        "admin_key_id": key.id,
        "admin_key_name": key.name,
        "fingerprint": key.fingerprint,
        "prefix": session.token_prefix,
        "state": state,
        "current": caller == Some(session.id),
        "created_at": session.created_at / 1000,
        "expires_at": session.expires_at / 1000,
        "revoked_at": session.revoked_at.map(|ms| ms / 1000),
    })
}

/// `GET /admin/sessions`, newest first.
pub async fn list(admin: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let caller = admin.session.as_ref().map(|session| session.session_id);
    let now_ms = state.clock.now_ms();
    let data: Vec<Value> = state
        .db
        .list_admin_sessions()
        .await?
        .iter()
        .map(|(session, key)| session_json(session, key, caller, now_ms))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `DELETE /admin/sessions/{id}`: revokes (also one's own: `admin logout`).
pub async fn revoke(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    let caller = admin.session.as_ref().map(|session| session.session_id);
    let (session, key) = state
        .db
        .get_admin_session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No admin session with id {id}")))?;
    // The route needs `viewer` so every key can log out; another key's
    // sessions are the `admin` role's (docs/admin.md, "Roles").
    let own = admin.session.as_ref().map(|session| session.admin_key_id) == Some(key.id);
    if !own && !admin.role.allows(Role::Admin) {
        return Err(ApiError::RoleRequired(format!(
            "Revoking another admin key's session needs the `admin` role; your credential has `{}`",
            admin.role
        )));
    }
    let now_ms = state.clock.now_ms();
    let before = session_json(&session, &key, caller, now_ms);
    if !state
        .sessions
        .send(RevokeSession { session_id: id })
        .await
        .map_err(|_| ApiError::Internal)??
    {
        return Err(ApiError::NotFound(format!("No admin session with id {id}")));
    }
    let after = state
        .db
        .get_admin_session(id)
        .await?
        .map(|(session, key)| session_json(&session, &key, caller, now_ms));
    slog::info!(state.log, "admin.session_revoked"; "session_id" => id, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "session.revoke",
        &format!("session:{id}"),
        Some(before),
        after,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
