//! `GET /v1/models`: the models the caller's token may use.

use crate::error::ApiError;
use crate::gateway::AppState;
use crate::gateway::auth::GatewayAuth;
use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;
use switchyard_actors::ListModels;

pub async fn list_models(
    state: Data<AppState>,
    auth: GatewayAuth,
) -> Result<HttpResponse, ApiError> {
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
