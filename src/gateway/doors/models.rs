//! `GET /v1/models`: the models the caller's token may use. Google's v1
//! lists models at the same path: a caller presenting its token as Google's
//! clients do (`x-goog-api-key` or `?key=`) gets Gemini's shape
//! (`doors::gemini::list_models`).

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::auth::GatewayAuth;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use switchyard_actors::ListModels;

pub async fn list_models(
    state: Data<AppState>,
    auth: Result<GatewayAuth, ApiError>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let google_client = request.headers().contains_key("x-goog-api-key")
        || crate::gateway::auth::query_key(&request).is_some();
    if google_client {
        return Ok(super::gemini::list_models(state, auth).await);
    }
    let auth = auth?;
    let models = state
        .router
        .actor()
        .send(ListModels)
        .await
        .map_err(|_| ApiError::Internal)?;
    let data: Vec<_> = models
        .into_iter()
        .filter(|model| auth.0.allows_model(&model.id))
        .map(|model| {
            json!({
                "id": model.id,
                "object": "model",
                "created": 0,
                "owned_by": model.owned_by,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}
