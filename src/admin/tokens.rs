//! Gateway token management: create with limits, change them, rotate the
//! secret. The token itself is returned once (at creation and at each
//! rotation); only its hash is stored.
//!
//! Every change invalidates the token's cached view and the limits engine's
//! state for it, so the very next request on this instance sees it (other
//! instances within the token cache's TTL, see `crate::tokens`).

use super::ADMIN_BODY_LIMIT;
use super::fields::{self, nullable, usd};
use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::tokens::{GatewayToken, NewToken, TokenChanges};
use crate::error::ApiError;
use crate::http::body::{read_body, read_json};
use crate::tokens;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use switchyard_actors::{Period, Quota, QuotaKind};

/// The name of the user that owns tokens created without `user_id`.
pub const DEFAULT_USER: &str = "default";
/// Rotation grace when the body names none: one hour.
const DEFAULT_GRACE_SECONDS: i64 = 3600;
/// The longest rotation grace: 30 days.
const MAX_GRACE_SECONDS: i64 = 30 * 86_400;
const MAX_ALLOWED_MODELS: usize = 1000;
const MAX_QUOTAS: usize = 16;

/// One periodic quota as the API takes it: `limit` in requests, tokens or
/// nano-USD, or `limit_usd` for a cost quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    pub period: String,
    pub kind: String,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub limit_usd: Option<f64>,
}

/// `POST /admin/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// The owner; absent: the `default` user.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// Exact model names or globs (`gpt-4o*`); absent means every model.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub budget_nanos: Option<i64>,
    #[serde(default)]
    pub budget_tokens: Option<i64>,
    #[serde(default)]
    pub rpm: Option<i64>,
    #[serde(default)]
    pub tpm: Option<i64>,
    #[serde(default)]
    pub max_parallel: Option<i64>,
    #[serde(default)]
    pub quotas: Option<Vec<QuotaInput>>,
    #[serde(default)]
    pub price_multiplier: Option<f64>,
    /// Unix time in seconds after which the token stops working.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /admin/tokens/{id}`: absent fields stay, `null` lifts a limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchToken {
    #[serde(default, deserialize_with = "nullable")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub user_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub budget_nanos: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub budget_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_parallel: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub quotas: Option<Option<Vec<QuotaInput>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub price_multiplier: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: Option<Option<bool>>,
}

impl From<CreateToken> for PatchToken {
    fn from(body: CreateToken) -> Self {
        Self {
            name: Some(Some(body.name)),
            user_id: body.user_id.map(Some),
            allowed_models: body.allowed_models.map(Some),
            budget_usd: body.budget_usd.map(Some),
            budget_nanos: body.budget_nanos.map(Some),
            budget_tokens: body.budget_tokens.map(Some),
            rpm: body.rpm.map(Some),
            tpm: body.tpm.map(Some),
            max_parallel: body.max_parallel.map(Some),
            quotas: body.quotas.map(Some),
            price_multiplier: body.price_multiplier.map(Some),
            expires_at: body.expires_at.map(Some),
            enabled: body.enabled.map(Some),
        }
    }
}

/// `POST /admin/tokens/{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateToken {
    /// How long the replaced token keeps working (seconds, 0 = not at all).
    #[serde(default)]
    pub grace_seconds: Option<i64>,
}

/// Applies `check` to a field that is present and not `null`.
fn map_set<T, U>(
    field: Option<Option<T>>,
    check: impl FnOnce(T) -> Result<U, ApiError>,
) -> Result<Option<Option<U>>, ApiError> {
    match field {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(value)) => check(value).map(|value| Some(Some(value))),
    }
}

/// A positive count that fits the `INTEGER` column.
fn positive_i32(param: &'static str, value: i64) -> Result<i32, ApiError> {
    match i32::try_from(value) {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(ApiError::bad_param(
            param,
            format!("`{param}` must be a whole number from 1 to {}", i32::MAX),
        )),
    }
}

fn allowed_models(models: Vec<String>) -> Result<String, ApiError> {
    if models.is_empty() || models.len() > MAX_ALLOWED_MODELS {
        return Err(ApiError::bad_param(
            "allowed_models",
            format!(
                "`allowed_models` must list 1 to {MAX_ALLOWED_MODELS} model names or globs, or be null (every model)"
            ),
        ));
    }
    let mut cleaned = Vec::with_capacity(models.len());
    for model in models {
        let model = model.trim();
        if model.is_empty() || model.len() > 200 {
            return Err(ApiError::bad_param(
                "allowed_models",
                "model names must be 1 to 200 characters",
            ));
        }
        cleaned.push(model.to_owned());
    }
    serde_json::to_string(&cleaned).map_err(|_| ApiError::Internal)
}

/// Validates quotas and stores them as `switchyard_actors::Quota` JSON.
pub fn quotas(inputs: Vec<QuotaInput>) -> Result<Option<String>, ApiError> {
    if inputs.len() > MAX_QUOTAS {
        return Err(ApiError::bad_param(
            "quotas",
            format!("at most {MAX_QUOTAS} quotas"),
        ));
    }
    let mut parsed = Vec::with_capacity(inputs.len());
    let mut seen = HashSet::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let period = match input.period.as_str() {
            "minute" => Period::Minute,
            "hour" => Period::Hour,
            "day" => Period::Day,
            "month" => Period::Month,
            other => {
                return Err(ApiError::bad_param(
                    "quotas",
                    format!(
                        "quotas[{index}].period `{other}` is not one of minute, hour, day, month"
                    ),
                ));
            }
        };
        let kind = match input.kind.as_str() {
            "requests" => QuotaKind::Requests,
            "tokens" => QuotaKind::Tokens,
            "cost" => QuotaKind::Cost,
            other => {
                return Err(ApiError::bad_param(
                    "quotas",
                    format!("quotas[{index}].kind `{other}` is not one of requests, tokens, cost"),
                ));
            }
        };
        let limit = match (input.limit, input.limit_usd, kind) {
            (Some(limit), None, _) => limit,
            (None, Some(amount), QuotaKind::Cost) => fields::usd_to_nanos("quotas", amount)?,
            (None, Some(_), _) => {
                return Err(ApiError::bad_param(
                    "quotas",
                    format!("quotas[{index}]: `limit_usd` is for cost quotas; use `limit`"),
                ));
            }
            _ => {
                return Err(ApiError::bad_param(
                    "quotas",
                    format!(
                        "quotas[{index}] needs exactly one of `limit` (or `limit_usd` for cost)"
                    ),
                ));
            }
        };
        let limit = u64::try_from(limit)
            .ok()
            .filter(|limit| *limit > 0)
            .ok_or_else(|| {
                ApiError::bad_param(
                    "quotas",
                    format!("quotas[{index}]: the limit must be greater than 0"),
                )
            })?;
        if !seen.insert((period, kind)) {
            return Err(ApiError::bad_param(
                "quotas",
                format!(
                    "quotas[{index}]: a {} quota per {} is already given",
                    input.kind, input.period
                ),
            ));
        }
        parsed.push(Quota {
            period,
            kind,
            limit,
        });
    }
    if parsed.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&parsed)
        .map(Some)
        .map_err(|_| ApiError::Internal)
}

/// Validates a body (create or patch) into the columns it sets.
async fn changes(state: &AdminState, body: PatchToken) -> Result<TokenChanges, ApiError> {
    let name = fields::not_null("name", body.name)?
        .map(|name| fields::name("name", &name))
        .transpose()?;
    let enabled = fields::not_null("enabled", body.enabled)?;
    let user_id = match body.user_id {
        Some(None) => {
            return Err(ApiError::bad_param(
                "user_id",
                "every token belongs to a user; give a user id",
            ));
        }
        Some(Some(user_id)) => {
            // Checked here so that a dangling id is the caller's 400, not
            // the foreign-key violation's 500.
            if state.db.get_user(user_id).await?.is_none() {
                return Err(ApiError::bad_param(
                    "user_id",
                    format!("No user with id {user_id}"),
                ));
            }
            Some(Some(user_id))
        }
        None => None,
    };
    let budget_nanos = match (body.budget_usd, body.budget_nanos) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_param(
                "budget_usd",
                "give `budget_usd` or `budget_nanos`, not both",
            ));
        }
        (Some(usd), None) => map_set(Some(usd), |usd| fields::usd_to_nanos("budget_usd", usd))?,
        (None, nanos) => map_set(nanos, |nanos| {
            if nanos < 0 {
                Err(ApiError::bad_param(
                    "budget_nanos",
                    "`budget_nanos` must not be negative",
                ))
            } else {
                Ok(nanos)
            }
        })?,
    };
    let budget_tokens = map_set(body.budget_tokens, |tokens| {
        if tokens < 0 {
            Err(ApiError::bad_param(
                "budget_tokens",
                "`budget_tokens` must not be negative",
            ))
        } else {
            Ok(tokens)
        }
    })?;
    let now_ms = state.clock.now_ms();
    let expires_at = map_set(body.expires_at, |seconds| {
        let ms = seconds.saturating_mul(1000);
        if ms <= now_ms {
            Err(ApiError::bad_param(
                "expires_at",
                "`expires_at` (unix seconds) must be in the future",
            ))
        } else {
            Ok(ms)
        }
    })?;
    Ok(TokenChanges {
        name,
        user_id,
        allowed_models: map_set(body.allowed_models, allowed_models)?,
        budget_nanos,
        budget_tokens,
        rpm: map_set(body.rpm, |v| positive_i32("rpm", v))?,
        tpm: map_set(body.tpm, |v| positive_i32("tpm", v))?,
        expires_at,
        enabled,
        max_parallel: map_set(body.max_parallel, |v| positive_i32("max_parallel", v))?,
        quotas: match body.quotas {
            None => None,
            Some(None) => Some(None),
            Some(Some(inputs)) => Some(quotas(inputs)?),
        },
        price_multiplier_ppm: map_set(body.price_multiplier, |factor| {
            fields::multiplier_to_ppm("price_multiplier", factor)
        })?,
    })
}

/// A stored quota list as the API shows it (cost limits also in USD).
fn quotas_json(stored: Option<&str>) -> Value {
    let quotas: Vec<Quota> = stored
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    Value::Array(
        quotas
            .iter()
            .map(|quota| {
                let mut value = serde_json::to_value(quota).unwrap_or(Value::Null);
                if quota.kind == QuotaKind::Cost
                    && let Some(object) = value.as_object_mut()
                {
                    let nanos = i64::try_from(quota.limit).unwrap_or(i64::MAX);
                    object.insert("limit_usd".to_owned(), json!(usd(nanos)));
                }
                value
            })
            .collect(),
    )
}

/// The public view of a token row: every limit, spend and hold; never the
/// hash. Times are unix seconds, money USD and nano-USD.
pub fn token_json(row: &GatewayToken) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "prefix": row.token_prefix,
        "user_id": row.user_id,
        "allowed_models": row.allowed_models.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "enabled": row.enabled,
        "expires_at": row.expires_at.map(|ms| ms / 1000),
        "budget_nanos": row.budget_nanos,
        "budget_usd": row.budget_nanos.map(usd),
        "budget_tokens": row.budget_tokens,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "max_parallel": row.max_parallel,
        "quotas": quotas_json(row.quotas.as_deref()),
        "price_multiplier": row.price_multiplier_ppm.map(fields::ppm_to_multiplier),
        "price_multiplier_ppm": row.price_multiplier_ppm,
        "spent_nanos": row.spent_nanos,
        "spent_usd": usd(row.spent_nanos),
        "spent_tokens": row.spent_tokens,
        "reserved_nanos": row.reserved_nanos,
        "reserved_usd": usd(row.reserved_nanos),
        "reserved_tokens": row.reserved_tokens,
        "request_count": row.request_count,
        "last_used_at": row.last_used_at.map(|ms| ms / 1000),
        "previous_token_expires_at": row
            .previous_token_hash
            .as_ref()
            .and(row.previous_expires_at)
            .map(|ms| ms / 1000),
        "created_at": row.created_at / 1000,
        "updated_at": row.updated_at / 1000,
    })
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("No token with id {id}"))
}

/// The token's new limits apply to its very next request here.
fn forget(state: &AdminState, id: i64) {
    state.tokens.invalidate(id);
    state.enforcer.forget(id);
}

/// `POST /admin/tokens`.
pub async fn create(
    admin: AdminAuth,
    state: Data<AdminState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateToken = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let mut set = changes(&state, body.into()).await?;
    let user_id = match set.user_id.take().flatten() {
        Some(user_id) => user_id,
        None => {
            state
                .db
                .get_user_by_name(DEFAULT_USER)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "user_id",
                        format!("There is no `{DEFAULT_USER}` user any more; give `user_id`"),
                    )
                })?
                .id
        }
    };
    let secret = tokens::generate();
    let row = state
        .db
        .create_token(&NewToken {
            name: set.name.take().unwrap_or_default(),
            token_hash: secret.hash,
            token_prefix: secret.display_prefix,
            user_id: Some(user_id),
            allowed_models: set.allowed_models.flatten(),
            budget_nanos: set.budget_nanos.flatten(),
            budget_tokens: set.budget_tokens.flatten(),
            rpm: set.rpm.flatten(),
            tpm: set.tpm.flatten(),
            expires_at: set.expires_at.flatten(),
            enabled: set.enabled.unwrap_or(true),
            max_parallel: set.max_parallel.flatten(),
            quotas: set.quotas.flatten(),
            price_multiplier_ppm: set.price_multiplier_ppm.flatten(),
        })
        .await?;
    state.tokens.forget_misses();
    slog::info!(state.log, "admin.token_created"; "token_id" => row.id, "user_id" => user_id, "by" => &admin.actor);
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

/// `PATCH /admin/tokens/{id}`.
pub async fn update(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body: PatchToken = fields::read_object(&request, payload).await?;
    let set = changes(&state, body).await?;
    let before = state.db.get_token(id).await?.ok_or_else(|| not_found(id))?;
    let row = state
        .db
        .update_token(id, &set)
        .await?
        .ok_or_else(|| not_found(id))?;
    forget(&state, id);
    slog::info!(state.log, "admin.token_updated"; "token_id" => id, "by" => &admin.actor);
    let after = token_json(&row);
    record(
        &state,
        &admin,
        "token.update",
        &format!("token:{id}"),
        Some(token_json(&before)),
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(after))
}

/// `POST /admin/tokens/{id}/rotate`: a new secret, returned once; the old
/// one keeps working for `grace_seconds`.
pub async fn rotate(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let raw = read_body(&request, payload, ADMIN_BODY_LIMIT).await?;
    let body: RotateToken = if raw.iter().all(u8::is_ascii_whitespace) {
        RotateToken::default()
    } else {
        let invalid =
            |error: serde_json::Error| ApiError::bad_request(format!("Invalid JSON body: {error}"));
        let value: Value = serde_json::from_slice(&raw).map_err(invalid)?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "Invalid JSON body: expected an object",
            ));
        }
        serde_json::from_value(value).map_err(invalid)?
    };
    let grace = body.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::bad_param(
            "grace_seconds",
            format!("`grace_seconds` must be 0 to {MAX_GRACE_SECONDS} (30 days)"),
        ));
    }
    let secret = tokens::generate();
    let grace_until = state.clock.now_ms().saturating_add(grace * 1000);
    let row = state
        .db
        .rotate_token(id, &secret.hash, &secret.display_prefix, grace_until)
        .await?
        .ok_or_else(|| not_found(id))?;
    // Drops the cached entry of the old hash too: its next use is looked up
    // again and found as the previous hash, with the grace period.
    forget(&state, id);
    state.tokens.forget_misses();
    slog::info!(state.log, "admin.token_rotated"; "token_id" => id, "grace_s" => grace, "by" => &admin.actor);
    let mut answer = token_json(&row);
    record(
        &state,
        &admin,
        "token.rotate",
        &format!("token:{id}"),
        None,
        Some(answer.clone()),
    )
    .await;
    if let Some(object) = answer.as_object_mut() {
        object.insert("token".to_owned(), Value::String(secret.token));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /admin/tokens`.
pub async fn list(_: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let rows = state.db.list_tokens().await?;
    let data: Vec<Value> = rows.iter().map(token_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `GET /admin/tokens/{id}`.
pub async fn get(
    _: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .db
        .get_token(*id)
        .await?
        .ok_or_else(|| not_found(*id))?;
    Ok(HttpResponse::Ok().json(token_json(&row)))
}

async fn set_enabled(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: i64,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let before = state
        .db
        .get_token(id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    if !state.db.set_token_enabled(id, enabled).await? {
        return Err(not_found(id));
    }
    forget(&state, id);
    slog::info!(state.log, "admin.token_updated"; "token_id" => id, "enabled" => enabled, "by" => &admin.actor);
    let row = state.db.get_token(id).await?.ok_or_else(|| not_found(id))?;
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

/// `POST /admin/tokens/{id}/disable`.
pub async fn disable(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, false).await
}

/// `POST /admin/tokens/{id}/enable`.
pub async fn enable(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(admin, state, *id, true).await
}

/// `DELETE /admin/tokens/{id}`.
pub async fn delete(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let before = state
        .db
        .get_token(*id)
        .await?
        .ok_or(ApiError::NotFound(format!("No token with id {id}")))?;
    if !state.db.delete_token(*id).await? {
        return Err(not_found(*id));
    }
    forget(&state, *id);
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
