//! Models and redirect rules: what the router can serve, the model cache,
//! and aliases (`from` served as `to`) kept in the database and applied to
//! the router at once.

use super::ADMIN_BODY_LIMIT;
use super::oplog::record;
use crate::admin::AdminState;
use crate::admin::auth::AdminAuth;
use crate::error::ApiError;
use crate::http::body::read_json;
use crate::model_cache::{self, RefreshError};
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_actors::{ListModels, SetRedirects};

/// `GET /admin/models`: routable models (with the provider tried first)
/// and each provider's cached model list.
pub async fn list(_: AdminAuth, state: Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let routable = state
        .router
        .actor()
        .send(ListModels)
        .await
        .map_err(|_| ApiError::Internal)?;
    let routable: Vec<_> = routable
        .into_iter()
        .map(|model| json!({ "id": model.id, "provider": model.owned_by }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "data": routable,
        "cache": state.models.snapshot(),
    })))
}

/// `POST /admin/models/{provider}/refresh`: fetches the provider's model
/// list now.
pub async fn refresh(
    _: AdminAuth,
    state: Data<AdminState>,
    client: Data<awc::Client>,
    provider: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider.into_inner();
    match model_cache::refresh(&state.router, &client, &state.models, &provider).await {
        Ok(models) => {
            slog::info!(state.log, "models.refreshed"; "provider" => &provider, "models" => models.len());
            Ok(HttpResponse::Ok().json(json!({ "provider": provider, "models": models })))
        }
        Err(error @ RefreshError::UnknownProvider(_)) => Err(ApiError::NotFound(error.to_string())),
        Err(error @ RefreshError::NotListable(_)) => Err(ApiError::bad_request(error.to_string())),
        Err(error @ RefreshError::NoKey(_)) => Err(ApiError::Unavailable {
            message: error.to_string(),
            retry_after: Some(Duration::from_secs(1)),
        }),
        Err(error @ RefreshError::Upstream { .. }) => {
            Err(ApiError::UpstreamFailed(error.to_string()))
        }
    }
}

/// `GET /admin/redirects`.
pub async fn list_redirects(
    _: AdminAuth,
    state: Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let rows = state.db.list_redirects().await?;
    Ok(HttpResponse::Ok().json(json!({ "data": rows })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectBody {
    /// The model (or `provider/model`) requests for `from` are served as.
    pub to: String,
}

/// The current redirect of `from`, as the operation log shows it.
async fn redirect_view(state: &AdminState, from: &str) -> Result<Option<Value>, ApiError> {
    Ok(state
        .db
        .list_redirects()
        .await?
        .into_iter()
        .find(|row| row.from_model == from)
        .map(|row| json!({ "from": row.from_model, "to": row.to_model })))
}

/// `PUT /admin/redirects/{from}` with `{"to": "..."}`: creates or replaces.
pub async fn put_redirect(
    admin: AdminAuth,
    state: Data<AdminState>,
    from: Path<String>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let from = from.into_inner();
    let body: RedirectBody = read_json(&request, payload, ADMIN_BODY_LIMIT).await?;
    let to = body.to.trim();
    if from.trim().is_empty() || from.len() > 200 {
        return Err(ApiError::bad_param(
            "from",
            "the model name must be 1 to 200 characters",
        ));
    }
    if to.is_empty() || to.len() > 200 {
        return Err(ApiError::bad_param(
            "to",
            "`to` must be 1 to 200 characters",
        ));
    }
    if to == from {
        return Err(ApiError::bad_param(
            "to",
            "a model cannot redirect to itself",
        ));
    }
    let before = redirect_view(&state, &from).await?;
    let row = state.db.upsert_redirect(&from, to).await?;
    apply_redirects(&state).await?;
    slog::info!(state.log, "admin.redirect_set"; "from" => &from, "to" => to, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "redirect.put",
        &format!("redirect:{from}"),
        before,
        Some(json!({ "from": row.from_model, "to": row.to_model })),
    )
    .await;
    Ok(HttpResponse::Ok().json(row))
}

/// `DELETE /admin/redirects/{from}`.
pub async fn delete_redirect(
    admin: AdminAuth,
    state: Data<AdminState>,
    from: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let from = from.into_inner();
    let before = redirect_view(&state, &from).await?;
    if !state.db.delete_redirect(&from).await? {
        return Err(ApiError::NotFound(format!("No redirect from `{from}`")));
    }
    apply_redirects(&state).await?;
    slog::info!(state.log, "admin.redirect_deleted"; "from" => &from, "by" => &admin.actor);
    record(
        &state,
        &admin,
        "redirect.delete",
        &format!("redirect:{from}"),
        before,
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The database's rules become the router's.
async fn apply_redirects(state: &AdminState) -> Result<(), ApiError> {
    let redirects = crate::config_store::load_redirects(&state.db)
        .await
        .map_err(|_| ApiError::Internal)?;
    state
        .router
        .actor()
        .send(SetRedirects(redirects))
        .await
        .map_err(|_| ApiError::Internal)
}
