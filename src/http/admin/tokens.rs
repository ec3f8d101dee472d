//! Gateway token management. The token itself is returned once, at creation;
//! only its hash is stored.

use super::ADMIN_BODY_LIMIT;
use super::oplog::record;
use crate::db::tokens::{GatewayToken, NewToken};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::{AdminAuth, now_ms};
use crate::http::body::read_json;
use crate::tokens;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    #[serde(default)]
    pub user_id: Option<i64>,
    /// Exact model names or globs (`gpt-4o*`); absent means every model.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Unix time in seconds after which the token stops working.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// The public view of a token row: never the hash.
pub fn token_json(row: &GatewayToken) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "prefix": row.token_prefix,
        "user_id": row.user_id,
        "allowed_models": row.allowed_models.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "enabled": row.enabled,
        "expires_at": row.expires_at.map(|ms| ms / 1000),
        "spent_nanos": row.spent_nanos,
        "spent_usd": row.spent_nanos as f64 / 1e9,
        "spent_tokens": row.spent_tokens,
        "request_count": row.request_count,
        "last_used_at": row.last_used_at.map(|ms| ms / 1000),
        "created_at": row.created_at / 1000,
    })
}

pub async fn create(
    admin: AdminAuth,
    state: Data<AppState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateToken = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_param(
            "name",
            "`name` must be 1 to 200 characters",
        ));
    }
    if let Some(models) = &body.allowed_models
        && models.iter().any(|model| model.trim().is_empty())
    {
        return Err(ApiError::bad_param(
            "allowed_models",
            "model names must be non-empty",
        ));
    }
    // Checked here so that a dangling id is the caller's 400, not the
    // foreign-key violation's 500.
    if let Some(user_id) = body.user_id
        && state.db.get_user(user_id).await?.is_none()
    {
        return Err(ApiError::bad_param(
            "user_id",
            format!("No user with id {user_id}"),
        ));
    }
    let expires_at = match body.expires_at {
        Some(seconds) if seconds.saturating_mul(1000) <= now_ms() => {
            return Err(ApiError::bad_param(
                "expires_at",
                "`expires_at` must be in the future",
            ));
        }
        Some(seconds) => Some(seconds.saturating_mul(1000)),
        None => None,
    };
    let secret = tokens::generate();
    let allowed_models = body
        .allowed_models
        .as_ref()
        .map(|models| serde_json::to_string(models).map_err(|_| ApiError::Internal))
        .transpose()?;
    let row = state
        .db
        .create_token(&NewToken {
            name: name.to_owned(),
            token_hash: secret.hash,
            token_prefix: secret.display_prefix,
            user_id: body.user_id,
            allowed_models,
            budget_nanos: None,
            budget_tokens: None,
            rpm: None,
            tpm: None,
            expires_at,
            enabled: true,
            max_parallel: None,
            quotas: None,
            price_multiplier_ppm: None,
        })
        .await?;
    state.tokens.forget_misses();
    slog::info!(state.log, "admin.token_created"; "token_id" => row.id, "by" => &admin.actor);
    let mut answer = token_json(&row);
    record(
        &state,
        &admin,
        "token.create",
        &format!("token:{}", row.id),
        None,
        Some(answer.clone()),
    )
    .await;
    if let Some(object) = answer.as_object_mut() {
        object.insert("token".to_owned(), Value::String(secret.token));
    }
    Ok(HttpResponse::Created().json(answer))
}

pub async fn list(_: AdminAuth, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.db.list_tokens().await?;
    let data: Vec<Value> = rows.iter().map(token_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

pub async fn get(
    _: AdminAuth,
    state: Data<AppState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .db
        .get_token(*id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    Ok(HttpResponse::Ok().json(token_json(&row)))
}

async fn set_enabled(
    admin: AdminAuth,
    state: Data<AppState>,
    id: i64,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let before = state
        .db
        .get_token(id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    if !state.db.set_token_enabled(id, enabled).await? {
        return Err(ApiError::NotFound(format!("No token with id {id}")));
    }
    state.tokens.invalidate(id);
    slog::info!(state.log, "admin.token_updated"; "token_id" => id, "enabled" => enabled, "by" => &admin.actor);
    let row = state
        .db
        .get_token(id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    let after = token_json(&row);
    record(
        &state,
        &admin,
        if enabled {
            "token.enable"
        } else {
            "token.disable"
        },
        &format!("token:{id}"),
        Some(token_json(&before)),
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(after))
}

pub async fn disable(
    admin: AdminAuth,
    state: Data<AppState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, false).await
}

pub async fn enable(
    admin: AdminAuth,
    state: Data<AppState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, true).await
}

pub async fn delete(
    admin: AdminAuth,
    state: Data<AppState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let before = state
        .db
        .get_token(*id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    if !state.db.delete_token(*id).await? {
        return Err(ApiError::NotFound(format!("No token with id {id}")));
    }
    state.tokens.invalidate(*id);
    slog::info!(state.log, "admin.token_deleted"; "token_id" => *id, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "token.delete",
        &format!("token:{id}"),
        Some(token_json(&before)),
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
