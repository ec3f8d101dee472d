//! The HTTP layer: the request-context middleware, bounded body reading,
//! the authentication throttle, health and metrics endpoints, the graceful
//! stop's stream cutoff and the route table. The client call itself is
//! `crate::gateway`; the admin plane is `crate::admin`.

pub mod body;
pub mod context;
pub mod health;
pub mod openapi;
pub mod prometheus;
pub mod routes;
pub mod shutdown;
pub mod throttle;

use crate::error::ApiError;
use actix_web::{HttpResponse, web};

/// The route table (declared in [`routes`], documented at `/openapi.json`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::register(cfg);
}

/// Unknown routes answer in the API's error shape too.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "Unknown route; see the README for the API".to_owned(),
    ))
}
