//! `POST /auth/challenge` and `POST /auth/verify`: the admin login, without
//! credentials (the signature is the credential). Bodies are small and
//! checked before any lookup; malformed input is a 400, a refused login a
//! 401 that says why (docs/admin.md lists them), and a key with too many
//! open challenges a 429.
//!
//! The dashboard (`/ui`) logs in the same way and asks for the session as a
//! cookie (`"cookie": true`; `super::session_cookie` has the policy), or,
//! where `admin.master_key_enabled`, with the master key (`POST
//! /auth/master`). `GET /auth/session` says who is logged in (and gives a
//! reloaded page its CSRF token back); `POST /auth/logout` revokes the
//! session and clears the cookie.

use crate::admin::AdminState;
use crate::admin::auth::{AdminAuth, MASTER_KEY_ACTOR};
use crate::admin::oplog::record;
use crate::admin::session_cookie::{self, COOKIE_NAME, csrf_token};
use crate::auth::generate_session_token;
use crate::auth::session::{IssueChallenge, RevokeSession, VerifyLogin};
use crate::db::{DbError, NewAdminKey, NewAdminSession, NewOperationLog};
use crate::error::ApiError;
use crate::gateway::auth::presented_token;
use crate::http::body::read_json;
use crate::http::context::RequestCtx;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

/// Login bodies are a few hundred bytes.
const LOGIN_BODY_LIMIT: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// base64url of the 32-byte Ed25519 public key.
    pub public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub public_key: String,
    pub nonce: String,
    /// base64url of the 64-byte signature over the challenge's `message`.
    pub signature: String,
    /// The dashboard's login: the session comes back as an `HttpOnly`
    /// cookie (not in the body) with a CSRF token.
    #[serde(default)]
    pub cookie: bool,
}

/// `POST /auth/master`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterLoginRequest {
    pub master_key: String,
}

/// The `admin_keys` row that master-key dashboard sessions belong to
/// (`admin_sessions.admin_key_id` is required). Its public key and
/// fingerprint are the text `master-key`, which never parses as a key, so
/// no challenge can be issued for it; disabling or removing it ends every
/// master-key dashboard session, and turning master-key access off makes
/// them refused (`AdminAuth`).
pub const MASTER_KEY_ROW: &str = "master-key";

/// `POST /auth/challenge` with `{"public_key"}`: a single-use nonce and the
/// exact message to sign.
pub async fn challenge(
    state: Data<AdminState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: ChallengeRequest = read_json(&request, payload, LOGIN_BODY_LIMIT).await?;
    let issued = state
        .sessions
        .send(IssueChallenge {
            public_key: body.public_key,
        })
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(HttpResponse::Ok().json(json!({
        "server_id": issued.server_id,
        "public_key": issued.public_key,
        "fingerprint": issued.fingerprint,
        "nonce": issued.nonce,
        "expires_at_ms": issued.expires_at,
        "message": issued.message,
    })))
}

/// `POST /auth/verify` with `{"public_key", "nonce", "signature"}`: a
/// session token (shown once) and its expiry.
pub async fn verify(
    state: Data<AdminState>,
    ctx: RequestCtx,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: VerifyRequest = read_json(&request, payload, LOGIN_BODY_LIMIT).await?;
    let outcome = state
        .sessions
        .send(VerifyLogin {
            public_key: body.public_key,
            nonce: body.nonce,
            signature: body.signature,
        })
        .await
        .map_err(|_| ApiError::Internal)?;
    let granted = match outcome {
        Ok(granted) => granted,
        Err(error) => {
            slog::info!(ctx.log, "admin.login_refused"; "reason" => %error);
            return Err(error.into());
        }
    };
    slog::info!(ctx.log, "admin.login"; "fingerprint" => &granted.fingerprint,
        "session_id" => granted.session_id);
    let cookie = body.cookie.then(|| {
        session_cookie::session_cookie(
            &request,
            &granted.token,
            granted.expires_at - state.clock.now_ms(),
        )
    });
    let view = json!({
        "id": granted.session_id,
        "admin_key_id": granted.admin_key_id,
        "fingerprint": granted.fingerprint,
        "expires_at": granted.expires_at / 1000,
    });
    let entry = NewOperationLog {
        actor: granted.fingerprint.clone(),
        session_id: Some(granted.session_id),
        action: "session.create".to_owned(),
        target: format!("session:{}", granted.session_id),
        before_json: None,
        after_json: Some(view.to_string()),
        request_id: Some(ctx.id.clone()),
    };
    if let Err(error) = state.db.insert_operation_log(&entry).await {
        slog::error!(ctx.log, "admin.operation_log_failed"; "action" => "session.create", "error" => %error);
    }
    if let Some(cookie) = cookie {
        // The token stays out of the page's reach: cookie only.
        return Ok(HttpResponse::Ok().cookie(cookie).json(json!({
            "session_id": granted.session_id,
            "admin_key_id": granted.admin_key_id,
            "fingerprint": granted.fingerprint,
            "actor": granted.fingerprint,
            "expires_at": granted.expires_at / 1000,
            "csrf_token": csrf_token(&granted.token),
        })));
    }
    Ok(HttpResponse::Ok().json(json!({
        "token": granted.token,
        "session_id": granted.session_id,
        "admin_key_id": granted.admin_key_id,
        "fingerprint": granted.fingerprint,
        "expires_at": granted.expires_at / 1000,
    })))
}

/// The reserved row of [`MASTER_KEY_ROW`], created on first use.
async fn master_key_row(state: &AdminState) -> Result<crate::db::AdminKey, ApiError> {
    if let Some(row) = state.db.find_admin_key(MASTER_KEY_ROW).await? {
        return Ok(row);
    }
    let created = state
        .db
        .create_admin_key(&NewAdminKey {
            name: "master-key (dashboard sessions)".to_owned(),
            public_key: MASTER_KEY_ROW.to_owned(),
            fingerprint: MASTER_KEY_ROW.to_owned(),
            enabled: true,
            // The master key acts as `admin`, so do its dashboard sessions.
            role: crate::auth::Role::Admin.as_str().to_owned(),
        })
        .await;
    match created {
        Ok(row) => Ok(row),
        // Another login (maybe on another instance) created it first.
        Err(DbError::Conflict(_)) => state
            .db
            .find_admin_key(MASTER_KEY_ROW)
            .await?
            .ok_or(ApiError::Internal),
        Err(error) => Err(error.into()),
    }
}

/// `POST /auth/master` with `{"master_key"}`: where master-key access is
/// on, a server-side session (revocable like any other) as a cookie, with
/// its CSRF token. Failures count in the admin throttle like any wrong
/// admin credential.
pub async fn master(
    state: Data<AdminState>,
    ctx: RequestCtx,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let peer = request.peer_addr().map(|addr| addr.ip());
    if let Some(ip) = peer {
        state
            .throttle
            .check(ip, state.clock.now_ms())
            .map_err(|wait| ApiError::RateLimited {
                message: format!(
                    "Too many failed authentications from your address; retry in {}s",
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait),
            })?;
    }
    let body: MasterLoginRequest = read_json(&request, payload, LOGIN_BODY_LIMIT).await?;
    let Some(master_key) = &state.master_key else {
        return Err(ApiError::Unauthorized(
            "Master-key access is turned off (admin.master_key_enabled); log in with an admin key"
                .to_owned(),
        ));
    };
    if !session_cookie::same(body.master_key.trim(), master_key.expose()) {
        if let Some(ip) = peer {
            state.throttle.failure(ip, state.clock.now_ms());
        }
        slog::info!(ctx.log, "admin.login_refused"; "reason" => "wrong master key");
        return Err(ApiError::Unauthorized(
            "Invalid admin credential".to_owned(),
        ));
    }
    let row = master_key_row(&state).await?;
    if !row.enabled {
        return Err(ApiError::Unauthorized(format!(
            "Master-key dashboard sessions are disabled (admin key {} `{MASTER_KEY_ROW}`)",
            row.id
        )));
    }
    let token = generate_session_token();
    let ttl_ms = i64::try_from(state.settings.admin.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let session = state
        .db
        .create_admin_session(&NewAdminSession {
            token_hash: token.hash,
            token_prefix: token.display_prefix,
            admin_key_id: row.id,
            expires_at: state.clock.now_ms().saturating_add(ttl_ms),
        })
        .await?;
    slog::info!(ctx.log, "admin.login"; "fingerprint" => MASTER_KEY_ACTOR,
        "session_id" => session.id);
    let view = json!({
        "id": session.id,
        "admin_key_id": row.id,
        "fingerprint": MASTER_KEY_ACTOR,
        "expires_at": session.expires_at / 1000,
    });
    let entry = NewOperationLog {
        actor: MASTER_KEY_ACTOR.to_owned(),
        session_id: Some(session.id),
        action: "session.create".to_owned(),
        target: format!("session:{}", session.id),
        before_json: None,
        after_json: Some(view.to_string()),
        request_id: Some(ctx.id.clone()),
    };
    if let Err(error) = state.db.insert_operation_log(&entry).await {
        slog::error!(ctx.log, "admin.operation_log_failed"; "action" => "session.create", "error" => %error);
    }
    let cookie = session_cookie::session_cookie(
        &request,
        &token.token,
        session.expires_at - state.clock.now_ms(),
    );
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({
        "session_id": session.id,
        "admin_key_id": row.id,
        "fingerprint": MASTER_KEY_ACTOR,
        "actor": MASTER_KEY_ACTOR,
        "expires_at": session.expires_at / 1000,
        "csrf_token": csrf_token(&token.token),
    })))
}

/// `GET /auth/session`: who the credential belongs to; for the session
/// cookie, its CSRF token too (a reloaded dashboard page recovers it here).
pub async fn session(admin: AdminAuth, request: HttpRequest) -> HttpResponse {
    // The cookie authenticated this request only when no header credential came.
    let csrf = presented_token(&request)
        .is_none()
        .then(|| request.cookie(COOKIE_NAME))
        .flatten()
        .map(|cookie| csrf_token(cookie.value()));
    let session = admin.session.as_ref();
    HttpResponse::Ok().json(json!({
        "actor": admin.actor,
        "role": admin.role.as_str(),
        "fingerprint": session.map(|session| session.fingerprint.clone()),
        "session_id": session.map(|session| session.session_id),
        "expires_at": session.map(|session| session.expires_at / 1000),
        "via": if csrf.is_some() { "cookie" } else { "header" },
        "csrf_token": csrf,
    }))
}

/// `POST /auth/logout`: revokes the caller's session (everywhere, like
/// `DELETE /admin/sessions/{id}`) and clears the cookie. With the master
/// key itself there is no session to revoke; the cookie is still cleared.
pub async fn logout(
    admin: AdminAuth,
    state: Data<AdminState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(session) = &admin.session {
        let id = session.session_id;
        state
            .sessions
            .send(RevokeSession { session_id: id })
            .await
            .map_err(|_| ApiError::Internal)??;
        slog::info!(state.log, "admin.logout"; "session_id" => id, "by" => &admin.actor);
        record(
            &state,
            &admin,
            "session.revoke",
            &format!("session:{id}"),
            None,
            Some(Value::String("logout".to_owned())),
        )
        .await;
    }
    Ok(HttpResponse::NoContent()
        .cookie(session_cookie::removal_cookie(&request))
        .finish())
}
