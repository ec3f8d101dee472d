//! Users: the owners of tokens, with a balance, a status, a prepaid flag and
//! a price multiplier. A token's cached view embeds its owner's status,
//! prepaid flag and multiplier, so a change to a user drops that user's
//! tokens from the cache (their next request reads the owner again).

use super::ADMIN_BODY_LIMIT;
use super::fields::{self, nullable, usd};
use super::oplog::record;
use super::tokens::DEFAULT_USER;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::db::DbError;
use crate::db::billing::BillingRecord;
use crate::db::users::{DeleteUser, NewUser, User, UserChanges};
use crate::error::ApiError;
use crate::http::body::read_json;
use actix_web::web::{Data, Path, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest single top-up: $1,000,000.
const MAX_TOPUP_USD: f64 = 1e6;

/// `POST /admin/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub prepaid: bool,
    /// Opening balance, recorded as a top-up.
    #[serde(default)]
    pub balance_usd: Option<f64>,
    #[serde(default)]
    pub price_multiplier: Option<f64>,
}

/// `PATCH /admin/users/{id}`: absent fields stay; `price_multiplier: null`
/// goes back to list price.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, deserialize_with = "nullable")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub prepaid: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    pub price_multiplier: Option<Option<f64>>,
}

/// `POST /admin/users/{id}/topup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topup {
    pub amount_usd: f64,
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /admin/users` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListUsers {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
    /// Only the user with exactly this name.
    #[serde(default)]
    pub name: Option<String>,
}

/// The public view of a user. Money in USD and nano-USD; `available` is
/// what a prepaid user can still spend (balance minus holds).
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "status": user.status,
        "prepaid": user.prepaid,
        "balance_nanos": user.balance_nanos,
        "balance_usd": usd(user.balance_nanos),
        "reserved_nanos": user.reserved_nanos,
        "reserved_usd": usd(user.reserved_nanos),
        "available_usd": usd(user.balance_nanos.saturating_sub(user.reserved_nanos)),
        "price_multiplier": user.price_multiplier_ppm.map(fields::ppm_to_multiplier),
        "price_multiplier_ppm": user.price_multiplier_ppm,
        "created_at": user.created_at / 1000,
        "updated_at": user.updated_at / 1000,
    })
}

/// A billing record as the API shows it (times in unix seconds).
pub fn billing_json(record: &BillingRecord) -> Value {
    json!({
        "id": record.id,
        "created_at": record.created_at / 1000,
        "kind": record.kind,
        "request_id": record.request_id,
        "user_id": record.user_id,
        "token_id": record.token_id,
        "model": record.model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "base_cost_nanos": record.base_cost_nanos,
        "multiplier": fields::ppm_to_multiplier(record.multiplier_ppm),
        "multiplier_ppm": record.multiplier_ppm,
        "amount_nanos": record.amount_nanos,
        "amount_usd": usd(record.amount_nanos),
        "priced": record.priced,
        "note": record.note,
        // Media units charged on top of the tokens (0 for a top-up).
        "images": record.images,
        "characters": record.characters,
        "audio_ms": record.audio_ms,
        "search_units": record.search_units,
    })
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("No user with id {id}"))
}

fn name_taken(error: DbError, name: &str) -> ApiError {
    match error {
        DbError::Conflict(_) => ApiError::Conflict(format!("A user named `{name}` already exists")),
        other => other.into(),
    }
}

fn status(raw: &str) -> Result<String, ApiError> {
    match raw {
        "active" | "suspended" => Ok(raw.to_owned()),
        _ => Err(ApiError::bad_param(
            "status",
            "`status` must be `active` or `suspended`",
        )),
    }
}

/// `POST /admin/users`.
pub async fn create(
    admin: AdminAuth,
    state: Data<AdminState>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateUser = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let name = fields::name("name", &body.name)?;
    let balance_nanos = body
        .balance_usd
        .map(|amount| fields::usd_to_nanos("balance_usd", amount))
        .transpose()?
        .unwrap_or(0);
    let price_multiplier_ppm = body
        .price_multiplier
        .map(|factor| fields::multiplier_to_ppm("price_multiplier", factor))
        .transpose()?;
    let user = state
        .db
        .create_user_with(&NewUser {
            name: name.clone(),
            prepaid: body.prepaid,
            balance_nanos,
            price_multiplier_ppm,
            now_ms: state.clock.now_ms(),
        })
        .await
        .map_err(|error| name_taken(error, &name))?;
    slog::info!(state.log, "admin.user_created"; "user_id" => user.id, "by" => &admin.actor);
    let after = user_json(&user);
    record(
        &state,
        &admin,
        "user.create",
        &format!("user:{}", user.id),
        None,
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Created().json(after))
}

/// `GET /admin/users?limit&offset&name`.
pub async fn list(
    _: AdminAuth,
    state: Data<AdminState>,
    query: Query<ListUsers>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = fields::paging(query.limit, query.offset)?;
    let (rows, total) = match &query.name {
        Some(name) => {
            let found: Vec<User> = state.db.get_user_by_name(name).await?.into_iter().collect();
            let total = i64::try_from(found.len()).unwrap_or(0);
            (found, total)
        }
        None => state.db.list_users_page(limit, offset).await?,
    };
    let data: Vec<Value> = rows.iter().map(user_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "total": total })))
}

/// `GET /admin/users/{id}`: the user, its tokens' ids and what its requests
/// were charged in all.
pub async fn get(
    _: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let shown = state
        .db
        .user_shown(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut answer = user_json(&shown.user);
    if let Some(object) = answer.as_object_mut() {
        object.insert("token_ids".to_owned(), json!(shown.token_ids));
        object.insert("spent_nanos".to_owned(), json!(shown.spent_nanos));
        object.insert("spent_usd".to_owned(), json!(usd(shown.spent_nanos)));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// `PATCH /admin/users/{id}`.
pub async fn update(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body: PatchUser = fields::read_object(&request, payload).await?;
    let name = fields::not_null("name", body.name)?
        .map(|name| fields::name("name", &name))
        .transpose()?;
    let changes = UserChanges {
        name: name.clone(),
        status: fields::not_null("status", body.status)?
            .as_deref()
            .map(status)
            .transpose()?,
        prepaid: fields::not_null("prepaid", body.prepaid)?,
        price_multiplier_ppm: match body.price_multiplier {
            None => None,
            Some(None) => Some(None),
            Some(Some(factor)) => {
                Some(Some(fields::multiplier_to_ppm("price_multiplier", factor)?))
            }
        },
    };
    if name.is_some()
        && let Some(user) = state.db.get_user(id).await?
        && user.name == DEFAULT_USER
        && name.as_deref() != Some(DEFAULT_USER)
    {
        return Err(ApiError::Conflict(format!(
            "The `{DEFAULT_USER}` user owns tokens created without `user_id`; it cannot be renamed"
        )));
    }
    let before = state.db.get_user(id).await?.map(|user| user_json(&user));
    let user = state
        .db
        .update_user(id, &changes)
        .await
        .map_err(|error| name_taken(error, name.as_deref().unwrap_or_default()))?
        .ok_or_else(|| not_found(id))?;
    // Cached tokens embed their owner's status, prepaid flag and multiplier.
    state.tokens.invalidate_user(id);
    slog::info!(state.log, "admin.user_updated"; "user_id" => id, "status" => &user.status, "by" => &admin.actor);
    let after = user_json(&user);
    record(
        &state,
        &admin,
        "user.update",
        &format!("user:{id}"),
        before,
        Some(after.clone()),
    )
    .await;
    Ok(HttpResponse::Ok().json(after))
}

/// `DELETE /admin/users/{id}`: only a user without tokens (409 otherwise:
/// delete or move them first). Its billing records stay as history.
pub async fn delete(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if let Some(user) = state.db.get_user(id).await?
        && user.name == DEFAULT_USER
    {
        return Err(ApiError::Conflict(format!(
            "The `{DEFAULT_USER}` user owns tokens created without `user_id`; it cannot be deleted"
        )));
    }
    let before = state.db.get_user(id).await?.map(|user| user_json(&user));
    match state.db.delete_user(id).await? {
        DeleteUser::Deleted => {}
        DeleteUser::NotFound => return Err(not_found(id)),
        DeleteUser::HasTokens(count) => {
            return Err(ApiError::Conflict(format!(
                "User {id} still owns {count} token(s); delete them or move them to another user (PATCH /admin/tokens/{{id}} with `user_id`) first"
            )));
        }
    }
    state.tokens.invalidate_user(id);
    slog::info!(state.log, "admin.user_deleted"; "user_id" => id, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "user.delete",
        &format!("user:{id}"),
        before,
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /admin/users/{id}/topup`: credits the balance and records it, in
/// one transaction.
pub async fn topup(
    admin: AdminAuth,
    state: Data<AdminState>,
    id: Path<i64>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body: Topup = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    if !body.amount_usd.is_finite() || body.amount_usd <= 0.0 || body.amount_usd > MAX_TOPUP_USD {
        return Err(ApiError::bad_param(
            "amount_usd",
            format!("`amount_usd` must be greater than 0 and at most {MAX_TOPUP_USD}"),
        ));
    }
    let amount_nanos = fields::usd_to_nanos("amount_usd", body.amount_usd)?;
    if amount_nanos == 0 {
        return Err(ApiError::bad_param(
            "amount_usd",
            "`amount_usd` is less than one nano-dollar",
        ));
    }
    let note = match body.note.map(|note| note.trim().to_owned()) {
        Some(note) if note.chars().count() > 500 => {
            return Err(ApiError::bad_param(
                "note",
                "`note` must be at most 500 characters",
            ));
        }
        Some(note) if note.is_empty() => None,
        other => other,
    };
    let (user, record_row) = state
        .db
        .topup(id, amount_nanos, note, state.clock.now_ms())
        .await?
        .ok_or_else(|| not_found(id))?;
    slog::info!(state.log, "admin.user_topup"; "user_id" => id, "amount_nanos" => amount_nanos, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "user.topup",
        &format!("user:{id}"),
        None,
        Some(billing_json(&record_row)),
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({
        "user": user_json(&user),
        "record": billing_json(&record_row),
    })))
}
