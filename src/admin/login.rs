//! `POST /auth/challenge` and `POST /auth/verify`: the admin login, without
//! credentials (the signature is the credential). Bodies are small and
//! checked before any lookup; malformed input is a 400, a refused login a
//! 401 that says why (docs/admin.md lists them), and a key with too many
//! open challenges a 429.

use crate::admin::AdminState;
use crate::auth::session::{IssueChallenge, VerifyLogin};
use crate::db::NewOperationLog;
use crate::error::ApiError;
use crate::http::body::read_json;
use crate::http::context::RequestCtx;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

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
}

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
    Ok(HttpResponse::Ok().json(json!({
        "token": granted.token,
        "session_id": granted.session_id,
        "admin_key_id": granted.admin_key_id,
        "fingerprint": granted.fingerprint,
        "expires_at": granted.expires_at / 1000,
    })))
}
